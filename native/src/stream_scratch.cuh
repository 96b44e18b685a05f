// One device buffer per CUDA stream, shared by the kernels of one op that run on it (they run one after
// another on a stream, so one buffer serves them all). It grows only outside a CUDA graph capture; a
// grown buffer's predecessor stays allocated until the stream's last user is released, since a
// captured graph may still point into it. Fp8Linear's intermediates and cuBLASLt workspace,
// Fp8Attention's and FlashAttention's each live in one (each op its own StreamScratch).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdio>
#include <map>
#include <mutex>
#include <vector>

namespace atelier {

class StreamScratch {
 public:
  struct Buffer {
    void* base = nullptr;
    size_t bytes = 0;
    std::vector<void*> retired;  // earlier, smaller buffers: a captured graph may still point into them
    int users = 0;               // kernels that have run on this stream
    int device = -1;
  };

  // The stream's buffer, at least `bytes`, with `user` holding a share of it until release(user).
  // Null with a message in `error` when it would grow inside a capture or cudaMalloc fails. The
  // Buffer stays where it is until its stream's last user is released.
  Buffer* get(const void* user, cudaStream_t stream, size_t bytes, char* error, size_t error_size) {
    std::lock_guard<std::mutex> lock(mutex_);
    Buffer& buffer = buffers_[stream];
    std::vector<cudaStream_t>& streams = users_[user];
    bool known = false;
    for (cudaStream_t s : streams) known = known || s == stream;
    if (!known) {
      streams.push_back(stream);
      ++buffer.users;
    }
    if (buffer.bytes >= bytes) return &buffer;
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(stream, &status);
    if (status != cudaStreamCaptureStatusNone) {
      std::snprintf(error, error_size,
                    "this stream's scratch must grow to %zu bytes inside a CUDA graph capture: run every shape once "
                    "on the stream before capturing",
                    bytes);
      return nullptr;
    }
    int device = 0;
    cudaGetDevice(&device);
    void* grown = nullptr;
    const cudaError_t e = cudaMalloc(&grown, bytes);
    if (e != cudaSuccess) {
      std::snprintf(error, error_size, "cannot allocate %zu bytes of scratch on GPU %d: %s", bytes, device,
                    cudaGetErrorString(e));
      return nullptr;
    }
    if (buffer.base != nullptr) buffer.retired.push_back(buffer.base);
    buffer.base = grown;
    buffer.bytes = bytes;
    buffer.device = device;
    return &buffer;
  }

  // `user`'s shares end; a stream's buffers are freed with its last user (ONNX Runtime destroys
  // kernels with their session, after its runs).
  void release(const void* user) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto held = users_.find(user);
    if (held == users_.end()) return;
    for (cudaStream_t stream : held->second) {
      auto it = buffers_.find(stream);
      if (it == buffers_.end() || --it->second.users > 0) continue;
      int previous = 0;
      cudaGetDevice(&previous);
      if (it->second.device >= 0) cudaSetDevice(it->second.device);
      cudaFree(it->second.base);
      for (void* p : it->second.retired) cudaFree(p);
      cudaSetDevice(previous);
      buffers_.erase(it);
    }
    users_.erase(held);
  }

 private:
  std::mutex mutex_;
  std::map<cudaStream_t, Buffer> buffers_;
  std::map<const void*, std::vector<cudaStream_t>> users_;
};

}  // namespace atelier
