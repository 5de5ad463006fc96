// Fused CPU kernels for the MoE student's sparse experts and its router's sparse backward.
//
// A selection idx (B, K) picks K rows of the expert tables per token.  Its B·K (token, row) pairs are
// sorted by row once (a stable counting sort: token order within a row).  Expert-major passes keep the
// expert's table rows (and gradient rows) in L1 while its pairs use them; the token-major pass keeps the
// token's output row in L1 over its K pairs:
//   forward, expert-major: v = x[b]·W_in[i] + b_in[i];  h = gelu(v), dh = gelu'(v)  (saved)
//   forward, token-major:  out[b] = Σ_j g·h·W_out[idx[b, j]] + b_out
//   backward, expert-major: ga = G[b]·W_out[i],  grad g = ga·h,  gp = ga·g·dh,
//             grad W_out[i] += g·h·G[b],  grad W_in[i] += gp·x[b],  grad b_in[i] += gp,
//             grad x[b] += gp·W_in[i]  (only when x needs a gradient)
// The router's backward through its k kept scores s = q·W[i] + c[i] is the same walk over its pairs, and its
// top-k (`smoe_topk`) is a threshold-and-sort pass over each row of the score block.
//
// Determinism: every sum runs in a fixed order (a row's pairs in token order; a token's terms in selection
// order) and nothing is atomic.  With T threads an expert-major pass splits the rows into T ranges of about
// equal pair counts, each thread adding into its own copy of the token-side outputs, and the copies are
// added in thread order; a token-major pass splits the tokens.  So a given (input, T) gives the same bytes.
//
// Vector code: GCC/Clang vector extensions (8 floats; the compiler picks the instructions).  On x86-64 each
// kernel is compiled twice, for x86-64-v3 (AVX2 + FMA) and for the baseline, and the CPU's features pick
// the version at load time (`target_clones`), so one build runs on any x86-64 machine.  Plain C ABI,
// loaded with ctypes: no Python or torch headers.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#define SMOE_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SMOE_CLONES
#endif
#define SMOE_INLINE static inline __attribute__((always_inline))

namespace {

// 8 floats in a vector register (one AVX2 register, two SSE ones in the default build), read and written
// unaligned through a may_alias type (a memcpy into a local vector can go through the stack).
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));

SMOE_INLINE v8 load8(const float* p) { return *reinterpret_cast<const v8u*>(p); }
SMOE_INLINE void store8(float* p, v8 v) { *reinterpret_cast<v8u*>(p) = v; }

// x·y with four independent vector accumulators (one would wait on each add's latency), added in a fixed
// order at the end.
SMOE_INLINE float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  v8 s0 = {}, s1 = {}, s2 = {}, s3 = {};
  int64_t t = 0;
  for (; t + 32 <= n; t += 32) {
    s0 += load8(a + t) * load8(b + t);
    s1 += load8(a + t + 8) * load8(b + t + 8);
    s2 += load8(a + t + 16) * load8(b + t + 16);
    s3 += load8(a + t + 24) * load8(b + t + 24);
  }
  for (; t + 8 <= n; t += 8) s0 += load8(a + t) * load8(b + t);
  const v8 s = (s0 + s1) + (s2 + s3);
  float total = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; t < n; ++t) total += a[t] * b[t];
  return total;
}

// Software prefetch of a row that a later pair will read: the pairs' token rows are scattered, so the
// hardware prefetcher cannot see them coming.
SMOE_INLINE void prefetch_row(const float* row, int64_t n) {
  for (int64_t t = 0; t < n; t += 16) __builtin_prefetch(row + t);
}

SMOE_INLINE void axpy(float alpha, const float* __restrict x, float* __restrict y, int64_t n) {
  int64_t t = 0;
  for (; t + 8 <= n; t += 8) {
    store8(y + t, load8(y + t) + alpha * load8(x + t));
  }
  for (; t < n; ++t) y[t] += alpha * x[t];
}

// torch.nn.functional.gelu (approximate="none") and its derivative, as ATen writes them.
SMOE_INLINE float gelu(float v) { return 0.5f * v * (1.f + std::erf(v * static_cast<float>(M_SQRT1_2))); }
SMOE_INLINE float gelu_grad(float v) {
  const float alpha = static_cast<float>(M_2_SQRTPI * M_SQRT1_2 * 0.5);
  const float cdf = 0.5f * (1.f + std::erf(v * static_cast<float>(M_SQRT1_2)));
  return cdf + v * alpha * std::exp(-0.5f * v * v);
}

#ifndef SMOE_AHEAD
#define SMOE_AHEAD 2
#endif
constexpr int64_t kAhead = SMOE_AHEAD;  // prefetch the token rows of the pair this many places ahead

struct Pairs {
  int64_t K;               // pairs per token
  int64_t total;           // pairs in all
  const int64_t* order;    // positions b·K + j of the pairs, sorted by row
  const int64_t* token;    // b of each sorted pair
  const int64_t* offsets;  // (rows + 1,) where each row's pairs begin
};

// Forward, expert-major: pre-activations, and gelu and its derivative at them (saved for the backward).
SMOE_CLONES void forward_rows(int64_t lo, int64_t hi, Pairs pr, int64_t D, const float* x, const float* w_in,
                              const float* b_in, float* h, float* dh) {
  for (int64_t i = lo; i < hi; ++i) {
    const float* wi = w_in + i * D;
    for (int64_t q = pr.offsets[i]; q < pr.offsets[i + 1]; ++q) {
      if (q + kAhead < pr.total) prefetch_row(x + pr.token[q + kAhead] * D, D);
      const int64_t p = pr.order[q];
      const float v = dot(x + pr.token[q] * D, wi, D) + b_in[i];
      h[p] = gelu(v);
      dh[p] = gelu_grad(v);
    }
  }
}

// Forward, token-major: out[b] = Σ_j g·h·W_out[idx[b, j]] + b_out (out[b] stays in L1 over its K pairs).
SMOE_CLONES void output_rows(int64_t lo, int64_t hi, int64_t K, int64_t D, const int64_t* idx, const float* w_out,
                             const float* b_out, const float* g, const float* h, float* out) {
  for (int64_t b = lo; b < hi; ++b) {
    float* ob = out + b * D;
    std::memset(ob, 0, D * sizeof(float));
    for (int64_t j = 0; j < K; ++j) {
      const int64_t p = b * K + j;
      if (j + 1 < K) prefetch_row(w_out + idx[p + 1] * D, D);
      axpy(g[p] * h[p], w_out + idx[p] * D, ob, D);
    }
    for (int64_t t = 0; t < D; ++t) ob[t] += b_out[t];
  }
}

SMOE_CLONES void backward_rows(int64_t lo, int64_t hi, Pairs pr, int64_t D, const float* grad_out, const float* x,
                               const float* w_in, const float* w_out, const float* g, const float* h, const float* dh,
                               float* grad_g, float* grad_w_in, float* grad_b_in, float* grad_w_out, float* grad_x) {
  for (int64_t i = lo; i < hi; ++i) {
    const float *wi = w_in + i * D, *wo = w_out + i * D;
    float *gwi = grad_w_in + i * D, *gwo = grad_w_out + i * D;
    std::memset(gwi, 0, D * sizeof(float));
    std::memset(gwo, 0, D * sizeof(float));
    float gb = 0.f;
    for (int64_t q = pr.offsets[i]; q < pr.offsets[i + 1]; ++q) {
      if (q + kAhead < pr.total) {
        const int64_t ahead = pr.token[q + kAhead];
        prefetch_row(x + ahead * D, D);
        prefetch_row(grad_out + ahead * D, D);
        if (grad_x) prefetch_row(grad_x + ahead * D, D);
      }
      const int64_t p = pr.order[q], b = pr.token[q];
      const float* gob = grad_out + b * D;
      const float ga = dot(gob, wo, D), gp = ga * g[p] * dh[p];
      grad_g[p] = ga * h[p];
      axpy(h[p] * g[p], gob, gwo, D);
      axpy(gp, x + b * D, gwi, D);
      gb += gp;
      if (grad_x) axpy(gp, wi, grad_x + b * D, D);
    }
    grad_b_in[i] = gb;
  }
}

// Router: grad q[b] += c[p]·W[i], grad W[i] = Σ c[p]·q[b], grad bias[i] = Σ c[p].
SMOE_CLONES void linear_backward_rows(int64_t lo, int64_t hi, Pairs pr, int64_t R, const float* c, const float* q,
                                      const float* w, float* grad_q, float* grad_w, float* grad_b) {
  for (int64_t i = lo; i < hi; ++i) {
    const float* wi = w + i * R;
    float* gw = grad_w ? grad_w + i * R : nullptr;
    if (gw) std::memset(gw, 0, R * sizeof(float));
    float gb = 0.f;
    for (int64_t s = pr.offsets[i]; s < pr.offsets[i + 1]; ++s) {
      const int64_t p = pr.order[s], b = pr.token[s];
      if (gw) axpy(c[p], q + b * R, gw, R);
      if (grad_q) axpy(c[p], wi, grad_q + b * R, R);
      gb += c[p];
    }
    if (grad_b) grad_b[i] = gb;
  }
}

// Row ranges of about equal pair counts, one per thread: bounds[t] .. bounds[t + 1].
std::vector<int64_t> split_rows(const int64_t* offsets, int64_t rows, int threads) {
  std::vector<int64_t> bounds(threads + 1, rows);
  bounds[0] = 0;
  const int64_t total = offsets[rows];
  int64_t i = 0;
  for (int t = 1; t < threads; ++t) {
    const int64_t target = total * t / threads;
    while (i < rows && offsets[i] < target) ++i;
    bounds[t] = i;
  }
  return bounds;
}

// Runs body(lo, hi, token_out) over row ranges on T threads; thread 0 scatters into `out`, the others into zeroed copies
// that are then added to `out` in thread order.  `out` (n floats) may be null (nothing scattered).
template <class Body>
void run_split(const int64_t* offsets, int64_t rows, int threads, float* out, int64_t n, Body body) {
  if (threads <= 1 || rows < 2) {
    body(0, rows, out);
    return;
  }
  const std::vector<int64_t> bounds = split_rows(offsets, rows, threads);
  std::vector<float> copies(out ? static_cast<size_t>(threads - 1) * n : 0, 0.f);
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < threads; ++t) {
    float* mine = !out ? nullptr : t == 0 ? out : copies.data() + static_cast<size_t>(t - 1) * n;
    body(bounds[t], bounds[t + 1], mine);
  }
  if (out)
    for (int t = 1; t < threads; ++t) {
      const float* c = copies.data() + static_cast<size_t>(t - 1) * n;
      for (int64_t e = 0; e < n; ++e) out[e] += c[e];
    }
}

// Top k of each row of scores (rows, cols), sorted by value descending (ties: lower column first).  A lower
// bound tau on the k-th largest value is the k-th largest of the maxima of G >= k chunks of the row (k chunks
// hold a value >= tau); the scores >= tau are few (at least k), and sorting them gives the answer.
SMOE_CLONES void topk_rows(int64_t lo, int64_t hi, const float* scores, int64_t cols, int64_t k, float* values,
                           int64_t* indices) {
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(16, cols / (2 * k)));
  const int64_t chunks = cols / chunk;
  std::vector<float> maxima(chunks);
  std::vector<std::pair<float, int64_t>> kept;
  kept.reserve(4 * k);
  const auto better = [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  for (int64_t r = lo; r < hi; ++r) {
    const float* row = scores + r * cols;
    for (int64_t g = 0; g < chunks; ++g) {
      float best = row[g * chunk];
      for (int64_t t = 1; t < chunk; ++t) best = std::max(best, row[g * chunk + t]);
      maxima[g] = best;
    }
    std::nth_element(maxima.begin(), maxima.begin() + (k - 1), maxima.end(), std::greater<float>());
    const float tau = maxima[k - 1];
    kept.clear();
    for (int64_t c = 0; c < cols; ++c)
      if (row[c] >= tau) kept.emplace_back(row[c], c);
    std::partial_sort(kept.begin(), kept.begin() + k, kept.end(), better);
    for (int64_t j = 0; j < k; ++j) {
      values[r * k + j] = kept[j].first;
      indices[r * k + j] = kept[j].second;
    }
  }
}

// Runs body(lo, hi) over T contiguous ranges of the B tokens, one per thread.
template <class Body>
void run_tokens(int64_t B, int threads, Body body) {
  if (threads <= 1 || B < 2) {
    body(0, B);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < threads; ++t) body(B * t / threads, B * (t + 1) / threads);
}

}  // namespace

extern "C" {

// values, indices (rows, k): the top k of each row of scores (rows, cols), best first.
void smoe_topk(const float* scores, int64_t rows, int64_t cols, int64_t k, float* values, int64_t* indices,
               int threads) {
  if (threads <= 1 || rows < 2) {
    topk_rows(0, rows, scores, cols, k, values, indices);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t)
    topk_rows(rows * t / threads, rows * (t + 1) / threads, scores, cols, k, values, indices);
}

// Stable counting sort of the P = B·K pairs of idx by row: order, token and row of each sorted pair,
// offsets (rows + 1).  Returns -1 if an index is out of range, else 0.
int smoe_sort_pairs(const int64_t* idx, int64_t P, int64_t K, int64_t rows, int64_t* order, int64_t* token,
                    int64_t* row, int64_t* offsets) {
  std::memset(offsets, 0, (rows + 1) * sizeof(int64_t));
  for (int64_t p = 0; p < P; ++p) {
    if (idx[p] < 0 || idx[p] >= rows) return -1;
    ++offsets[idx[p] + 1];
  }
  for (int64_t i = 0; i < rows; ++i) offsets[i + 1] += offsets[i];
  std::vector<int64_t> next(offsets, offsets + rows);
  for (int64_t p = 0; p < P; ++p) {
    const int64_t s = next[idx[p]]++;
    order[s] = p;
    token[s] = p / K;
    row[s] = idx[p];
  }
  return 0;
}

// out (B, D) = Σ over pairs of gelu(x·W_in + b_in)·g·W_out, + b_out; h and dh (B, K), gelu and its
// derivative at each pair's pre-activation, are saved for the backward.
void smoe_experts_forward(int64_t B, int64_t K, int64_t D, int64_t N, const int64_t* order, const int64_t* token,
                          const int64_t* offsets, const int64_t* idx, const float* x, const float* w_in,
                          const float* b_in, const float* w_out, const float* b_out, const float* g, float* h,
                          float* dh, float* out, int threads) {
  const Pairs pr{K, offsets[N], order, token, offsets};
  run_split(offsets, N, threads, nullptr, 0,
            [&](int64_t lo, int64_t hi, float*) { forward_rows(lo, hi, pr, D, x, w_in, b_in, h, dh); });
  run_tokens(B, threads, [&](int64_t lo, int64_t hi) { output_rows(lo, hi, K, D, idx, w_out, b_out, g, h, out); });
}

// Gradients of the forward's inputs given grad_out (B, D); grad_x may be null.
void smoe_experts_backward(int64_t B, int64_t K, int64_t D, int64_t N, const int64_t* order, const int64_t* token,
                           const int64_t* offsets, const float* grad_out, const float* x, const float* w_in,
                           const float* w_out, const float* g, const float* h, const float* dh, float* grad_g,
                           float* grad_w_in, float* grad_b_in, float* grad_w_out, float* grad_x, int threads) {
  if (grad_x) std::memset(grad_x, 0, B * D * sizeof(float));
  const Pairs pr{K, offsets[N], order, token, offsets};
  run_split(offsets, N, threads, grad_x, B * D, [&](int64_t lo, int64_t hi, float* gx) {
    backward_rows(lo, hi, pr, D, grad_out, x, w_in, w_out, g, h, dh, grad_g, grad_w_in, grad_b_in, grad_w_out, gx);
  });
}

// Router backward through the kept scores s[b, j] = q[b]·W[idx[b, j]] (+ c[idx]); any output may be null.
void smoe_linear_backward(int64_t B, int64_t K, int64_t R, int64_t N, const int64_t* order, const int64_t* token,
                          const int64_t* offsets, const float* grad, const float* q, const float* w, float* grad_q,
                          float* grad_w, float* grad_b, int threads) {
  if (grad_q) std::memset(grad_q, 0, B * R * sizeof(float));
  const Pairs pr{K, offsets[N], order, token, offsets};
  run_split(offsets, N, threads, grad_q, B * R, [&](int64_t lo, int64_t hi, float* gq) {
    linear_backward_rows(lo, hi, pr, R, grad, q, w, gq, grad_w, grad_b);
  });
}

}  // extern "C"
