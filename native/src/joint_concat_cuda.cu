// JointConcat on the GPU: one kernel on ORT's stream, every size a kernel parameter (no allocation,
// no host buffers, no synchronisation: CUDA-graph capturable and safe to replay). Each batch entry
// of y is a's entry followed by b's, so a thread copies y's units in a grid-stride loop over the
// entry (blockIdx.y walks the batch), taking each from a or b by comparing its index: no division.
// A unit is 16 bytes when a token's row (C · element size) and the three pointers allow, else the
// widest of 8, 4, 2 bytes that does; every entry boundary is a whole number of units.
#include <cuda_runtime.h>

#include <cstdint>

#include "joint_concat.h"

namespace atelier {
namespace {

constexpr int kThreads = 256;
// Blocks per launch at most (over both grid axes); the grid-stride loop covers the rest. Enough for
// several waves on an H200 (132 SMs, 8 such blocks each), few enough that threads loop on big copies.
constexpr int64_t kMaxBlocks = 4096;
constexpr int64_t kMaxGridY = 65535;

// Batch entries n_start, n_start + n_stride, … and, in each, units start, start + stride, … of y
// (blockIdx.y and blockIdx.x · blockDim.x + threadIdx.x with their grid's strides).
template <typename U>
__host__ __device__ __forceinline__ void copy_units(const U* __restrict__ a, const U* __restrict__ b,
                                                    U* __restrict__ y, int64_t batch, int64_t a_units,
                                                    int64_t b_units, int64_t n_start, int64_t n_stride,
                                                    int64_t start, int64_t stride) {
  const int64_t y_units = a_units + b_units;
  for (int64_t n = n_start; n < batch; n += n_stride) {
    const U* an = a + n * a_units;
    const U* bn = b + n * b_units;
    U* yn = y + n * y_units;
    for (int64_t i = start; i < y_units; i += stride) yn[i] = i < a_units ? an[i] : bn[i - a_units];
  }
}

template <typename U>
__global__ void __launch_bounds__(kThreads)
    joint_concat_kernel(const U* __restrict__ a, const U* __restrict__ b, U* __restrict__ y, int64_t batch,
                        int64_t a_units, int64_t b_units) {
  copy_units(a, b, y, batch, a_units, b_units, blockIdx.y, gridDim.y,
             static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x, static_cast<int64_t>(gridDim.x) * blockDim.x);
}

struct Units {
  int64_t a;  // units of U in one batch entry of a
  int64_t b;  // … of b
};

template <typename U>
Units units_of(const JointConcatArgs& args) {
  return {args.a_row_bytes() / static_cast<int64_t>(sizeof(U)), args.b_row_bytes() / static_cast<int64_t>(sizeof(U))};
}

// One block row per batch entry (up to kMaxGridY), enough blocks along x to give each thread one
// unit of an entry, within kMaxBlocks in all.
dim3 grid_for(int64_t batch, int64_t y_units) {
  const int64_t grid_y = batch < kMaxGridY ? batch : kMaxGridY;
  const int64_t wanted_x = (y_units + kThreads - 1) / kThreads;
  const int64_t max_x = kMaxBlocks / grid_y > 0 ? kMaxBlocks / grid_y : 1;
  return dim3(static_cast<unsigned>(wanted_x < max_x ? wanted_x : max_x), static_cast<unsigned>(grid_y));
}

template <typename U>
void launch(const JointConcatArgs& args, cudaStream_t stream) {
  const Units units = units_of<U>(args);
  joint_concat_kernel<U><<<grid_for(args.batch, units.a + units.b), kThreads, 0, stream>>>(
      static_cast<const U*>(args.a), static_cast<const U*>(args.b), static_cast<U*>(args.y), args.batch, units.a,
      units.b);
}

bool aligned(const void* p, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0; }

// The widest unit that divides a token's row and to which every pointer is aligned.
int unit_bytes(const JointConcatArgs& args) {
  const int64_t token_bytes = args.channels * args.element_size;
  for (int bytes : {16, 8, 4}) {
    const uintptr_t b = static_cast<uintptr_t>(bytes);
    if (token_bytes % bytes == 0 && aligned(args.a, b) && aligned(args.b, b) && aligned(args.y, b)) return bytes;
  }
  return 2;  // every element type here is at least 2 bytes and ORT aligns tensors far more
}

}  // namespace

const char* joint_concat_cuda(const JointConcatArgs& args, void* stream) {
  if (args.batch <= 0 || args.y_row_bytes() == 0) return nullptr;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (unit_bytes(args)) {
    case 16:
      launch<uint4>(args, s);
      break;
    case 8:
      launch<uint2>(args, s);
      break;
    case 4:
      launch<uint32_t>(args, s);
      break;
    default:
      launch<uint16_t>(args, s);
      break;
  }
  const cudaError_t error = cudaGetLastError();
  return error == cudaSuccess ? nullptr : cudaGetErrorString(error);
}

}  // namespace atelier
