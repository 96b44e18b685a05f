#!/usr/bin/env bash
# Issue 10's tenth-session second call (bench/NOTES.md "Issue 10, tenth session"), on the machine of
# gpu-form-a.sh (node unpacked, the Large files written; carry .gpu/bundle and .gpu/tokenizers):
# gpu-torch-fastacc.sh with our W8A8 as shipped and with the per-tensor MLP beside PyTorch's compiled
# FP8 with fast accumulation and torch.compile bf16. Ends by ENDS_BY seconds (default 570).
# On the GPU machine, from the checkout: bash bench/gpu/gpu-form-a-2.sh
ENDS_BY=${ENDS_BY:-570}
OURS_ENV="ATELIER_FP8_MLP_HANDOFF=1" ENDS_BY=$ENDS_BY bash bench/gpu/gpu-torch-fastacc.sh
