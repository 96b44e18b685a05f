// FlashAttention-3's Hopper forward kernel for atelier:FlashAttention: the instantiation that
// hopper/instantiations/flash_fwd_hdim64_fp16_sm90.cu holds, and the parameters hopper/flash_api.cpp's
// mha_fwd / set_params_fprop fill for a non-causal, non-varlen, non-paged, unsplit MHA call on
// [B, T, H, 64] tensors. Compiled by native/library.mjs with hopper/setup.py's nvcc flags (and its
// FLASHATTENTION_DISABLE_* defines for everything but this kernel), against the sources
// native/fa3-deps.sh exports into the git-ignored .gpu/fa3/; never compiled with the library's flags.
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "fa3_forward.h"
#include "flash_fwd_launch_template.h"

template void run_mha_fwd_<90, cutlass::half_t, 64, 64, false, false, false, false>(Flash_fwd_params& params,
                                                                                   cudaStream_t stream);

// run_flash_fwd refers to this for varlen inputs (hopper/flash_prepare_scheduler.cu). This build has
// FLASHATTENTION_DISABLE_VARLEN, which compiles the varlen branch out of every kernel, so it is never
// called; defining it saves compiling that file.
void prepare_varlen_num_blocks(Flash_fwd_params&, cudaStream_t, bool, int, int, bool) {
  fprintf(stderr, "atelier FlashAttention: prepare_varlen_num_blocks called, but this build has no varlen support\n");
  abort();
}

namespace atelier {

void fa3_forward_fp16_hdim64(const Fa3Forward& call, void* stream) {
  constexpr int kD = 64;
  Flash_fwd_params p = {};  // set_params_fprop: "Reset the parameters"
  p.is_bf16 = false;
  p.is_e4m3 = false;
  p.q_ptr = const_cast<void*>(call.q);
  p.k_ptr = const_cast<void*>(call.k);
  p.v_ptr = const_cast<void*>(call.v);
  p.o_ptr = call.out;
  const int64_t row = int64_t(call.heads) * kD, batch = int64_t(call.tokens) * row;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = row;
  p.q_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = kD;
  p.v_dim_stride = 1;
  p.q_batch_stride = p.k_batch_stride = p.v_batch_stride = p.o_batch_stride = batch;
  p.softmax_lse_ptr = call.lse;
  p.b = call.batch;
  p.h = p.h_k = call.heads;
  p.seqlen_q = p.seqlen_k = call.tokens;
  p.seqlen_q_rounded = p.seqlen_k_rounded = (call.tokens + 127) / 128 * 128;
  p.d = p.d_rounded = kD;
  p.scale_softmax = call.scale;
  p.softcap = 0.f;
  p.p_dropout = 1.f;  // the probability of keeping: no dropout
  p.p_dropout_in_uint8_t = uint8_t(std::floor(p.p_dropout * 255.0));
  p.rp_dropout = 1.f;
  // mha_fwd with is_causal=false, window (-1, -1), attention_chunk 0: neither causal nor local, and
  // set_params_fprop widens the window to the whole sequence.
  p.is_causal = false;
  p.is_local = false;
  p.window_size_left = call.tokens - 1;
  p.window_size_right = call.tokens - 1;
  p.attention_chunk = 0;
  p.arch = 90;
  p.num_sm = call.num_sm;  // sm_margin 0
  p.total_q = p.total_k = call.batch * call.tokens;
  p.b_k = call.batch;
  p.dv = p.dv_rounded = kD;
  p.page_size = 1;
  p.num_pages = 0;
  p.prepare_varlen_pdl = false;
  p.num_splits_dynamic_ptr = nullptr;
  p.pagedkv_tma = false;  // get_pagedkv_tma: no page table
  p.num_splits = 1;       // get_num_splits: FLASHATTENTION_DISABLE_SPLIT
  p.pack_gqa = false;     // get_pack_gqa: h == h_k
  // scheduler_needs_semaphore (sm90) = (causal || local) && num_splits == 1 || varlen: false here, so
  // no tile-count semaphore nor scheduler metadata (the non-causal kernel's StaticPersistentTileScheduler
  // strides tiles over one CTA per SM).
  p.varlen_sort_batches = !p.is_local;
  p.head_swizzle = p.is_causal || p.is_local;
  p.tile_count_semaphore = nullptr;
  p.rotary_dim = 0;
  run_mha_fwd_<90, cutlass::half_t, 64, 64, false, false, false, false>(p, static_cast<cudaStream_t>(stream));
}

}  // namespace atelier
