// Delayed per-tensor e4m3 scaling on the GPU (Transformer Engine's; the math is fp8_linear.h's,
// output "e4m3_delayed"): the device state of one kernel instance and the helpers that read and
// update it, shared by Fp8Linear's output "e4m3_delayed" (fp8_linear_cuda.cu) and AdaLN*Quant's
// act_scaling "delayed_tensor" (adaln_cuda.cu), so both compute s and d with the same operations.
// In an unnamed namespace: each .cu file that includes it gets its own copy of the kernels.
// delayed_begin's block size is its caller's (THREADS, a multiple of 32; launch it with exactly that).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_reduce.h"
#include "fp8_linear.h"

namespace atelier {
namespace {

// The device state of one kernel instance: the ring, then these slots.
struct DelayedSlots {
  int history;
  __host__ __device__ int amax() const { return history; }  // this call's amax, as uint bits of |v|
  __host__ __device__ int s() const { return history + 1; }
  __host__ __device__ int d() const { return history + 2; }
  __host__ __device__ int position() const { return history + 3; }  // int bits
  __host__ __device__ int done() const { return history + 4; }      // uint bits: blocks finished
  __host__ __device__ int count() const { return history + 5; }
};

// s and d = 1 / s from the reference amax: delayed_scale() of fp8_linear_cpu.cc, in the same
// float32 operations.
__device__ __forceinline__ float2 delayed_scale_of(float ref, float margin) {
  float s = __fdiv_rn(__fmul_rn(margin, ref), kE4m3Max);
  float d = __fdiv_rn(1.0f, s);
  if (!(ref > 0.0f) || !isfinite(ref) || !(s > 0.0f) || !isfinite(s) || !(d > 0.0f) || !isfinite(d)) {
    s = 1.0f;
    d = 1.0f;
  }
  return make_float2(s, d);
}

// The call's amax into the ring if finite, and the amax slot zeroed for the next call.
__device__ __forceinline__ void push_amax(float* state, DelayedSlots slots, float amax) {
  if (isfinite(amax)) {
    int* position = reinterpret_cast<int*>(state + slots.position());
    state[*position] = amax;
    *position = (*position + 1) % slots.history;
  }
  state[slots.amax()] = 0.0f;
}

// max of non-negative floats by their bits: NaN (|NaN| has bits above +inf's) wins, as on the CPU.
struct BitsMax {
  __device__ __forceinline__ float operator()(float a, float b) const {
    return __uint_as_float(max(__float_as_uint(a), __float_as_uint(b)));
  }
};

// One block: s and d from the reference amax (the ring's max; the first call its own amax, margin
// 1), y_scale filled with s, this call's amax zeroed unless it is the first call's (already measured).
template <int THREADS>
__global__ void __launch_bounds__(THREADS)
    delayed_begin(float* __restrict__ state, DelayedSlots slots, float margin, bool first, float* __restrict__ y_scale,
                  int64_t rows) {
  __shared__ float partials[THREADS / cuda_reduce::kWarp];
  __shared__ float scale_shared;
  float ref = 0.0f;
  if (!first)
    for (int i = threadIdx.x; i < slots.history; i += blockDim.x) ref = fmaxf(ref, state[i]);
  ref = cuda_reduce::block_max(ref, partials);
  if (threadIdx.x == 0) {
    if (first) {
      ref = state[slots.amax()];
      margin = 1.0f;
    }
    const float2 sd = delayed_scale_of(ref, margin);
    const float s = sd.x, d = sd.y;
    state[slots.s()] = s;
    state[slots.d()] = d;
    if (!first) state[slots.amax()] = 0.0f;
    scale_shared = s;
  }
  __syncthreads();
  const float s = scale_shared;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) y_scale[r] = s;
}

// The call's amax into the ring (if finite); the slot zeroed.
__global__ void delayed_push(float* __restrict__ state, DelayedSlots slots) {
  push_amax(state, slots, state[slots.amax()]);
}

// delayed_push, then the next call's s and d from the ring as it now is (margin · its max, what
// delayed_begin would compute at the next call's start) into their slots: a kernel whose every
// block reads s and d from the slots needs no ring reduction of its own (one thread: the ring is
// at most kMaxAmaxHistory floats).
__device__ __forceinline__ void push_and_set_next(float* state, DelayedSlots slots, float margin) {
  push_amax(state, slots, state[slots.amax()]);
  float ref = 0.0f;
  for (int i = 0; i < slots.history; ++i) ref = fmaxf(ref, state[i]);
  const float2 sd = delayed_scale_of(ref, margin);
  state[slots.s()] = sd.x;
  state[slots.d()] = sd.y;
}

__global__ void delayed_push_next(float* __restrict__ state, DelayedSlots slots, float margin) {
  push_and_set_next(state, slots, margin);
}

// The end of a later call whose GEMM wrote its codes with d from the slots (Fp8Linear's e4m3 D): one
// block fills y_scale with this call's s (what the previous call's end left in the slot), then
// thread 0 does delayed_push_next (the amax into the ring, the next call's s and d from it). So the
// call needs no delayed_begin before its GEMM: s and d were ready since the previous call.
template <int THREADS>
__global__ void __launch_bounds__(THREADS)
    delayed_fill_push_next(float* __restrict__ state, DelayedSlots slots, float margin, float* __restrict__ y_scale,
                           int64_t rows) {
  const float s = state[slots.s()];
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) y_scale[r] = s;
  __syncthreads();  // every thread has read s before it is replaced
  if (threadIdx.x == 0) push_and_set_next(state, slots, margin);
}

// A block's amax max-ed into the call's slot (by bits). Thousands of blocks aim at one address: the
// atomic only when the block's amax is above what the slot already holds (it only grows), so most
// blocks just read it.
__device__ __forceinline__ void max_into_slot(float* state, DelayedSlots slots, float amax) {
  unsigned int* slot = reinterpret_cast<unsigned int*>(state + slots.amax());
  const unsigned int bits = __float_as_uint(amax);
  if (bits > *reinterpret_cast<volatile unsigned int*>(slot)) atomicMax(slot, bits);
}

}  // namespace
}  // namespace atelier
