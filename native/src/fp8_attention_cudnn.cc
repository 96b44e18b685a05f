// Fp8Attention's cuDNN part (fp8_attention_cudnn.h): cuDNN's FP8 scaled dot-product attention,
// forward, through the cuDNN frontend's graph API (header-only; unpacked by native/cudnn-deps.mjs,
// never committed). The frontend's dynamic loading resolves every cuDNN function from the handle we
// dlopen, so the library does not link against cuDNN and loads where cuDNN is absent; only this op
// then fails, at its first run, saying why.
//
// The graph (cudnn-frontend samples/cpp/sdpa/fp8_fwd.cpp; test/python/sdpa/fp8_ref.py for the math):
// io type e4m3, intermediate and compute float32; Q, K, V and O [b, h, s, d] with strides
// [s·h·d, d, h·d, 1] (token rows of h heads, as our tensors are); the scalars Descale_Q/K/V/S, Scale_S
// and Scale_O as device float32 [1,1,1,1] tensors; Amax_S and Amax_O written to scratch; no stats (inference),
// no mask, attn_scale a constant. Hopper's FP8 forward writes O as e4m3 (a float16 O needs Blackwell
// and cuDNN 9.13+, sdpa_support_surface.h), hence Scale_O and our dequantize kernel.
#ifdef ATELIER_WITH_CUDNN

#include "fp8_attention_cudnn.h"

#include <dlfcn.h>

#include <cstdarg>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <unordered_map>

#include <cudnn_frontend.h>

namespace cudnn_frontend {
// The frontend's dynamic loading reads cuDNN's functions from this handle (cudnn_frontend_shim.h).
void* cudnn_dlhandle = nullptr;
}  // namespace cudnn_frontend

namespace atelier {
namespace cudnn_sdpa {
namespace {

namespace fe = cudnn_frontend;

constexpr const char* kLibrary = "libcudnn.so.9";
// cuDNN's FP8 forward attention: 9.1 and newer, except 9.10.0 (the frontend's support surface).
constexpr size_t kMinimumVersion = 90100;

enum Uid : int64_t {
  kQ = 1,
  kK,
  kV,
  kO,
  kDescaleQ,
  kDescaleK,
  kDescaleV,
  kDescaleS,
  kScaleS,
  kScaleO,
  kAmaxS,
  kAmaxO,
  kSeqLenQ,
  kSeqLenKv,
};

void set_error(char* error, size_t size, const char* format, ...) __attribute__((format(printf, 3, 4)));
void set_error(char* error, size_t size, const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vsnprintf(error, size, format, args);
  va_end(args);
}

struct Library {
  std::string error;
  size_t version = 0;
};

const Library& library() {
  static const Library lib = [] {
    Library l;
    void* handle = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = dlerror();
      l.error = std::string("cannot open ") + kLibrary + " (" + (why ? why : "unknown error") +
                "): cuDNN 9.1 or newer must be on the library path";
      return l;
    }
    fe::cudnn_dlhandle = handle;  // stays open for the life of the process
    try {
      l.version = fe::detail::get_backend_version();
    } catch (const std::exception& e) {
      l.error = std::string(kLibrary) + ": " + e.what();
      return l;
    }
    if (l.version < kMinimumVersion || l.version == 91000)
      l.error = "cuDNN " + std::to_string(l.version) + " has no FP8 attention on this path (9.1 or newer, not 9.10.0)";
    return l;
  }();
  return lib;
}

std::shared_ptr<fe::graph::Tensor_attributes> scalar(fe::graph::Graph& graph, const char* name, int64_t uid) {
  return graph.tensor(fe::graph::Tensor_attributes()
                          .set_name(name)
                          .set_uid(uid)
                          .set_dim({1, 1, 1, 1})
                          .set_stride({1, 1, 1, 1})
                          .set_data_type(fe::DataType_t::FLOAT));
}

}  // namespace

struct Plan {
  cudnnHandle_t handle = nullptr;
  std::shared_ptr<fe::graph::Graph> graph;
  int64_t workspace = 0;
  bool padded = false;

  ~Plan() {
    graph.reset();
    if (handle != nullptr) fe::detail::destroy_handle(handle);
  }
};

const char* open_library() {
  const Library& l = library();
  return l.error.empty() ? nullptr : l.error.c_str();
}

size_t backend_version() { return library().version; }

namespace {

// One attempt at the graph: plain, or with a padding mask (sequence lengths from device tensors).
// Empty string on success, else the frontend's reason.
std::string build(Plan& plan, int64_t b, int64_t t, int64_t h, int64_t d, float scale, int sm, bool padded) {
  auto graph = std::make_shared<fe::graph::Graph>();
  graph->set_io_data_type(fe::DataType_t::FP8_E4M3)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  // Known here; saves the frontend opening libcudart itself to ask.
  graph->set_sm_version(sm);
  const std::vector<int64_t> dims = {b, h, t, d};
  const std::vector<int64_t> strides = {t * h * d, d, h * d, 1};
  auto tensor = [&](const char* name, int64_t uid) {
    return graph->tensor(fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim(dims).set_stride(strides));
  };
  auto q = tensor("Q", kQ);
  auto k = tensor("K", kK);
  auto v = tensor("V", kV);
  auto descale_q = scalar(*graph, "Descale_Q", kDescaleQ);
  auto descale_k = scalar(*graph, "Descale_K", kDescaleK);
  auto descale_v = scalar(*graph, "Descale_V", kDescaleV);
  auto descale_s = scalar(*graph, "Descale_S", kDescaleS);
  auto scale_s = scalar(*graph, "Scale_S", kScaleS);
  auto scale_o = scalar(*graph, "Scale_O", kScaleO);
  auto options =
      fe::graph::SDPA_fp8_attributes().set_name("atelier_fp8_attention").set_generate_stats(false).set_attn_scale(scale);
  if (padded) {
    auto seq_len = [&](const char* name, int64_t uid) {
      return graph->tensor(fe::graph::Tensor_attributes()
                               .set_name(name)
                               .set_uid(uid)
                               .set_dim({b, 1, 1, 1})
                               .set_stride({1, 1, 1, 1})
                               .set_data_type(fe::DataType_t::INT32));
    };
    options.set_padding_mask(true).set_seq_len_q(seq_len("Seq_len_Q", kSeqLenQ)).set_seq_len_kv(
        seq_len("Seq_len_KV", kSeqLenKv));
  }
  auto [o, stats, amax_s, amax_o] =
      graph->sdpa_fp8(q, k, v, descale_q, descale_k, descale_v, descale_s, scale_s, scale_o, options);
  (void)stats;  // null: no stats for inference
  o->set_output(true).set_uid(kO).set_dim(dims).set_stride(strides).set_data_type(fe::DataType_t::FP8_E4M3);
  for (auto [amax, uid] : {std::pair{amax_s, kAmaxS}, std::pair{amax_o, kAmaxO}})
    amax->set_output(true).set_uid(uid).set_dim({1, 1, 1, 1}).set_stride({1, 1, 1, 1}).set_data_type(
        fe::DataType_t::FLOAT);

  fe::error_t status = graph->validate();
  if (!status.is_good()) return "validate: " + status.get_message();
  // The handle only after validation, which needs no GPU (a build without one gets this far).
  if (plan.handle == nullptr) {
    const cudnnStatus_t s = fe::detail::create_handle(&plan.handle);
    if (s != CUDNN_STATUS_SUCCESS) {
      plan.handle = nullptr;
      return "cudnnCreate failed (status " + std::to_string(static_cast<int>(s)) + ")";
    }
  }
  status = graph->build_operation_graph(plan.handle);
  if (status.is_good()) status = graph->create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK});
  if (status.is_good()) status = graph->check_support(plan.handle);
  if (status.is_good()) status = graph->build_plans(plan.handle);
  int64_t workspace = 0;
  if (status.is_good()) status = graph->get_workspace_size(workspace);
  if (!status.is_good()) return status.get_message().empty() ? std::string("(no message)") : status.get_message();
  plan.graph = std::move(graph);
  plan.workspace = workspace;
  plan.padded = padded;
  return "";
}

}  // namespace

Plan* make_plan(int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim, float scale, int sm, char* error,
                size_t error_size) {
  if (const char* why = open_library()) {
    set_error(error, error_size, "%s", why);
    return nullptr;
  }
  auto plan = std::make_unique<Plan>();
  try {
    const std::string plain = build(*plan, batch, tokens, heads, head_dim, scale, sm, false);
    if (plain.empty()) return plan.release();
    if (plan->handle == nullptr && plain.rfind("cudnnCreate", 0) == 0) {
      set_error(error, error_size, "cuDNN %zu: %s", backend_version(), plain.c_str());
      return nullptr;
    }
    const std::string padded = build(*plan, batch, tokens, heads, head_dim, scale, sm, true);
    if (padded.empty()) return plan.release();
    set_error(error, error_size,
              "cuDNN %zu has no FP8 attention for q [%lld, %lld, %lld × %lld] on sm_%d: %s; with a padding mask: %s",
              backend_version(), static_cast<long long>(batch), static_cast<long long>(tokens),
              static_cast<long long>(heads), static_cast<long long>(head_dim), sm, plain.c_str(), padded.c_str());
  } catch (const std::exception& e) {
    set_error(error, error_size, "the cuDNN frontend failed: %s", e.what());
  }
  return nullptr;
}

void destroy_plan(Plan* plan) { delete plan; }

int64_t workspace_bytes(const Plan* plan) { return plan->workspace; }

bool uses_padding_mask(const Plan* plan) { return plan->padded; }

bool run(Plan* plan, void* stream, const Pointers& p, char* error, size_t error_size) {
  try {
    const cudnnStatus_t s = fe::detail::set_stream(plan->handle, static_cast<cudaStream_t>(stream));
    if (s != CUDNN_STATUS_SUCCESS) {
      set_error(error, error_size, "cudnnSetStream failed (status %d)", static_cast<int>(s));
      return false;
    }
    // The frontend's variant pack takes non-const pointers; cuDNN only reads the inputs.
    std::unordered_map<int64_t, void*> pack = {
        {kQ, const_cast<void*>(p.q8)},
        {kK, const_cast<void*>(p.k8)},
        {kV, const_cast<void*>(p.v8)},
        {kO, p.o8},
        {kDescaleQ, const_cast<float*>(p.descale_q)},
        {kDescaleK, const_cast<float*>(p.descale_k)},
        {kDescaleV, const_cast<float*>(p.descale_v)},
        {kDescaleS, const_cast<float*>(p.descale_s)},
        {kScaleS, const_cast<float*>(p.scale_s)},
        {kScaleO, const_cast<float*>(p.scale_o)},
        {kAmaxS, p.amax_s},
        {kAmaxO, p.amax_o},
    };
    if (plan->padded) {
      pack[kSeqLenQ] = const_cast<int32_t*>(p.seq_len);
      pack[kSeqLenKv] = const_cast<int32_t*>(p.seq_len);
    }
    fe::error_t status = plan->graph->execute(plan->handle, pack, p.workspace);
    if (!status.is_good()) {
      set_error(error, error_size, "cuDNN's FP8 attention failed to run: %s", status.get_message().c_str());
      return false;
    }
  } catch (const std::exception& e) {
    set_error(error, error_size, "the cuDNN frontend failed: %s", e.what());
    return false;
  }
  return true;
}

}  // namespace cudnn_sdpa
}  // namespace atelier

#endif  // ATELIER_WITH_CUDNN
