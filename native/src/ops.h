// The library's OrtCustomOp entries: one per (op, execution provider, element type), so ORT's type
// constraints say exactly which tensors each kernel takes. register.cc puts them in one table.
#pragma once

#include "ort_min.h"

namespace atelier {

enum class Device { cpu, cuda };

// ORT hands callbacks the address of `base`; it is the first member so we can get back to the rest.
struct CustomOp {
  OrtCustomOp base;
  Device device;
  ONNXTensorElementDataType type;
  // Shape inference gets no OrtApi of its own; this is the one RegisterCustomOps was given.
  const OrtApi* api;
};

// AdaLNModulate (adaln_modulate.h): float32, float16.
CustomOp make_adaln_op(Device device, ONNXTensorElementDataType type, const OrtApi* api);
// AdaLNModulateQuant (adaln_modulate.h): float32, float16 x/shift/scale; float8e4m3fn x8, float32 act_scale.
CustomOp make_adaln_quant_op(Device device, ONNXTensorElementDataType type, const OrtApi* api);
// AdaLNResidual (adaln_modulate.h): float32, float16.
CustomOp make_adaln_residual_op(Device device, ONNXTensorElementDataType type, const OrtApi* api);
// AdaLNResidualQuant (adaln_modulate.h): float32, float16 x/branch/gate/shift/scale and residual;
// float8e4m3fn x8, float32 act_scale.
CustomOp make_adaln_residual_quant_op(Device device, ONNXTensorElementDataType type, const OrtApi* api);
// JointConcat (joint_concat.h): float32, float16, int64.
CustomOp make_joint_concat_op(Device device, ONNXTensorElementDataType type, const OrtApi* api);
// JointQkvNorm (joint_qkv_norm.h): float32, float16.
CustomOp make_joint_qkv_norm_op(Device device, ONNXTensorElementDataType type, const OrtApi* api);
// Fp8Linear (fp8_linear.h): float16 x, float8e4m3fn weight, float32 scales, float16 bias and y.
CustomOp make_fp8_linear_op(Device device, const OrtApi* api);
// Fp8LinearQ (fp8_linear.h): float8e4m3fn x8 and float32 act_scale instead of float16 x.
CustomOp make_fp8_linear_q_op(Device device, const OrtApi* api);
// JointSplitQuant (joint_split_quant.h): float16 joint, int64 context_tokens (host memory); float8e4m3fn
// codes and float32 scales of each stream's tokens.
CustomOp make_joint_split_quant_op(Device device, const OrtApi* api);
// Fp8Attention (fp8_attention.h): float16 q, k, v and out; FP8 inside (cuDNN on the GPU).
CustomOp make_fp8_attention_op(Device device, const OrtApi* api);
// FlashAttention (flash_attention.h): float16 q, k, v and out; FlashAttention-3 on Hopper.
CustomOp make_flash_attention_op(Device device, const OrtApi* api);

}  // namespace atelier
