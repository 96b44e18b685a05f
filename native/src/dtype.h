// The float element types our kernels compute in, as the op glue tells a kernel which it was given
// (AdaLNModulate, JointQkvNorm: one OrtCustomOp entry per type, the same kernel source for both).
#pragma once

namespace atelier {

enum class Dtype { f32, f16 };

}  // namespace atelier
