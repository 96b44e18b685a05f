// The OrtCustomOp entries of AdaLNModulate: one per (execution provider, element type), so ORT's
// type constraints say exactly which tensors each kernel takes.
#pragma once

#include "ort_min.h"

namespace atelier {

enum class Device { cpu, cuda };

// ORT hands callbacks the address of `base`; it is the first member so we can get back to the rest.
struct AdaLnOp {
  OrtCustomOp base;
  Device device;
  ONNXTensorElementDataType type;
  // Shape inference gets no OrtApi of its own; this is the one RegisterCustomOps was given.
  const OrtApi* api;
};

AdaLnOp make_adaln_op(Device device, ONNXTensorElementDataType type, const OrtApi* api);

}  // namespace atelier
