// The three-convolution ISP (conv3x3 + tanh, conv3x3 + ReLU, conv3x3 + ReLU, pixel shuffle x2),
// fused tile by tile so the intermediates never leave the cache.
//
// Compiled at first use by unisp/export/fused.py (g++ -O3 -march=native) and called through ctypes.
// Layout: input packed planes float32 [N][4][h][w] (NCHW, contiguous), output float32
// [N][3][2h][2w]. Weights arrive re-ordered as [cin][ky][kx][cout] so one tap's weights for every
// output channel are contiguous; biases [cout].
//
// The image is cut into tiles of `band_rows` packed rows by `strip_cols` packed columns, handed
// out to threads one at a time. A tile walks down its rows keeping, for the input and each
// intermediate, a ring of three rows ([channel][padded width], a few hundred kB at most): an
// output row needs conv2 rows y-1..y+1, which need conv1 rows y-2..y+2 and input rows y-3..y+3,
// and columns likewise (a 3-column halo each side, recomputed by neighbouring tiles). Rows and
// columns outside the image are zero, exactly PyTorch's zero padding of every layer's input.
// Vector code uses GCC vector extensions, lowered to AVX-512, AVX2 or SSE by -march=native.
//
// A bf16 variant (unisp_fused_forward_bf16) is built only where the compiler targets
// AVX512-BF16: every layer's input is rounded to bf16 (round to nearest even) and stored as pairs of
// channels per pixel, weights arrive as bf16 pairs of input channels, and vdpbf16ps does two
// multiply-adds per lane into float32 accumulators; bias, tanh, ReLU and the output stay float32.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__AVX512F__)
#define VW 16  // floats per vector register
#define NB 2   // vectors of pixels per block: 2 x 12 accumulators fit in 32 registers
#elif defined(__AVX__)
#define VW 8
#define NB 1   // 12 accumulators + input + weight in 16 registers
#else
#define VW 4
#define NB 1
#endif
#define BLOCK (VW * NB)  // pixels computed together

typedef float vf __attribute__((vector_size(VW * 4)));
typedef float vfu __attribute__((vector_size(VW * 4), aligned(4)));
typedef int32_t vi __attribute__((vector_size(VW * 4)));

static inline vf load(const float* p) { return *(const vfu*)p; }
static inline void store(float* p, vf v) { *(vfu*)p = v; }
static inline vf splat(float s) { return (vf){} + s; }
static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline vf vmin(vf a, vf b) { return a < b ? a : b; }

// exp(y) for 0 <= y <= 20 (Cephes expf: range reduction by ln 2 in two parts, degree-6
// polynomial, relative error about 1 ulp).
static inline vf exp_pos(vf y) {
    const vi n = __builtin_convertvector(y * 1.44269504088896341f + 0.5f, vi);  // round (y >= 0)
    const vf fn = __builtin_convertvector(n, vf);
    const vf r = y - fn * 0.693359375f - fn * -2.12194440e-4f;
    vf p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const vf e = p * r * r + r + 1.0f;
    return e * (vf)((n + 127) << 23);  // times 2^n
}

// tanh(x) = sign(x) (1 - 2 / (exp(2|x|) + 1)); absolute error below 1e-7. |x| >= 10 gives
// exp(20) and a result within 1e-8 of +-1, so the argument is clamped there.
static inline vf tanh_v(vf x) {
    const vi sign = (vi)x & (int32_t)0x80000000;
    const vf a = (vf)((vi)x & 0x7fffffff);
    const vf e = exp_pos(vmin(a + a, splat(20.0f)));
    const vf t = 1.0f - 2.0f / (e + 1.0f);
    return (vf)((vi)t | sign);
}

// One output row of a 3x3 convolution with COUT channels from three input rows. Rows are laid
// out [channel][wp] in local column indices; rows[k] is image row y-1+k. Computes local columns
// [first, first + count) (count a multiple of BLOCK) from input columns [first - 1, first + count + 1).
template <int CIN, int COUT, bool TANH>
static void conv_row(const float* const rows[3], int wp, int first, int count, const float* wt, const float* bias,
                     float* out) {
    for (int x0 = first; x0 < first + count; x0 += BLOCK) {
        vf acc[COUT][NB];
#pragma GCC unroll 16
        for (int o = 0; o < COUT; ++o)
#pragma GCC unroll 2
            for (int k = 0; k < NB; ++k) acc[o][k] = splat(bias[o]);
        for (int c = 0; c < CIN; ++c)
            for (int ky = 0; ky < 3; ++ky)
#pragma GCC unroll 3
                for (int kx = 0; kx < 3; ++kx) {
                    const float* src = rows[ky] + c * wp + x0 - 1 + kx;
                    const float* w = wt + ((c * 3 + ky) * 3 + kx) * COUT;
                    vf in[NB];
#pragma GCC unroll 2
                    for (int k = 0; k < NB; ++k) in[k] = load(src + k * VW);
#pragma GCC unroll 16
                    for (int o = 0; o < COUT; ++o)
#pragma GCC unroll 2
                        for (int k = 0; k < NB; ++k) acc[o][k] += in[k] * w[o];
                }
#pragma GCC unroll 16
        for (int o = 0; o < COUT; ++o)
#pragma GCC unroll 2
            for (int k = 0; k < NB; ++k) {
                const vf v = TANH ? tanh_v(acc[o][k]) : vmax(acc[o][k], splat(0.0f));
                store(out + o * wp + x0 + k * VW, v);
            }
    }
}

// Pixel shuffle of one block: channel 4c + 2i + j of its first m pixels goes to output colour c,
// row i, column 2x + j (`out` at the block's first output pixel, row 2y).
static inline void shuffle_store(const float (*tmp)[BLOCK], int m, float* out, int64_t plane, int ow) {
    for (int c = 0; c < 3; ++c)
        for (int i = 0; i < 2; ++i) {
            float* dst = out + c * plane + (int64_t)i * ow;
            const float* even = tmp[4 * c + 2 * i];
            const float* odd = tmp[4 * c + 2 * i + 1];
            for (int x = 0; x < m; ++x) {
                dst[2 * x] = even[x];
                dst[2 * x + 1] = odd[x];
            }
        }
}

// The last convolution (CIN -> 12) over local columns [first, first + n), ReLU (and clamp to
// [0, 1] when asked), and the pixel shuffle: channel 4c + 2i + j at packed (y, x) goes to output
// colour c at (2y + i, 2x + j). `out` points at output row 2y, column 2x of local column `first`.
template <int CIN>
static void conv3_row(const float* const rows[3], int wp, int first, int n, const float* wt, const float* bias,
                      bool clamp, float* out, int64_t plane, int ow) {
    alignas(64) float tmp[12][BLOCK];
    for (int x0 = 0; x0 < n; x0 += BLOCK) {
        vf acc[12][NB];
#pragma GCC unroll 12
        for (int o = 0; o < 12; ++o)
#pragma GCC unroll 2
            for (int k = 0; k < NB; ++k) acc[o][k] = splat(bias[o]);
        for (int c = 0; c < CIN; ++c)
            for (int ky = 0; ky < 3; ++ky)
#pragma GCC unroll 3
                for (int kx = 0; kx < 3; ++kx) {
                    const float* src = rows[ky] + c * wp + first + x0 - 1 + kx;
                    const float* wv = wt + ((c * 3 + ky) * 3 + kx) * 12;
                    vf in[NB];
#pragma GCC unroll 2
                    for (int k = 0; k < NB; ++k) in[k] = load(src + k * VW);
#pragma GCC unroll 12
                    for (int o = 0; o < 12; ++o)
#pragma GCC unroll 2
                        for (int k = 0; k < NB; ++k) acc[o][k] += in[k] * wv[o];
                }
#pragma GCC unroll 12
        for (int o = 0; o < 12; ++o)
#pragma GCC unroll 2
            for (int k = 0; k < NB; ++k) {
                vf v = vmax(acc[o][k], splat(0.0f));
                if (clamp) v = vmin(v, splat(1.0f));
                store(&tmp[o][k * VW], v);
            }
        shuffle_store(tmp, std::min(BLOCK, n - x0), out + 2 * x0, plane, ow);
    }
}

#if defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__AVX512F__)
#include <immintrin.h>
#define UNISP_BF16 1

// Two bf16 values in one 32-bit lane: channel 2p in the low half, 2p + 1 in the high half (the
// order vdpbf16ps pairs them in). Activation rows are [channel pair][wp] of these.
typedef uint32_t bf16x2;

// Rounds a (even channel) and b (odd channel), 16 pixels each, to bf16 (nearest even) and
// interleaves them into 16 pairs.
static inline __m512i pack_pairs(__m512 a, __m512 b) {
    // vcvtne2ps2bf16(b, a) puts a in bf16 lanes 0..15 and b in 16..31; lane 2i takes i, 2i + 1 takes 16 + i.
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                           23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(b, a));
}

// The CIN -> COUT convolution sums of one block of 2 x 16 pixels starting at local column x0
// (rows as in conv_row, in channel pairs), bias included, in float32.
template <int CIN, int COUT>
static inline void dot_block_bf16(const bf16x2* const rows[3], int wp, int x0, const bf16x2* wt, const float* bias,
                                  __m512 acc[COUT][2]) {
#pragma GCC unroll 16
    for (int o = 0; o < COUT; ++o) acc[o][0] = acc[o][1] = _mm512_set1_ps(bias[o]);
    for (int p = 0; p < CIN / 2; ++p)
        for (int ky = 0; ky < 3; ++ky)
#pragma GCC unroll 3
            for (int kx = 0; kx < 3; ++kx) {
                const bf16x2* src = rows[ky] + p * wp + x0 - 1 + kx;
                const bf16x2* wv = wt + ((p * 3 + ky) * 3 + kx) * COUT;
                const __m512bh in0 = (__m512bh)_mm512_loadu_si512(src);
                const __m512bh in1 = (__m512bh)_mm512_loadu_si512(src + 16);
#pragma GCC unroll 16
                for (int o = 0; o < COUT; ++o) {
                    const __m512bh wo = (__m512bh)_mm512_set1_epi32((int)wv[o]);
                    acc[o][0] = _mm512_dpbf16_ps(acc[o][0], in0, wo);
                    acc[o][1] = _mm512_dpbf16_ps(acc[o][1], in1, wo);
                }
            }
}

// conv_row in bf16: rows and output in channel pairs, weights [CIN / 2][3][3][COUT] pairs.
template <int CIN, int COUT, bool TANH>
static void conv_row_bf16(const bf16x2* const rows[3], int wp, int first, int count, const bf16x2* wt,
                          const float* bias, bf16x2* out) {
    static_assert(BLOCK == 32 && CIN % 2 == 0 && COUT % 2 == 0, "bf16 path: AVX-512, channel pairs");
    for (int x0 = first; x0 < first + count; x0 += BLOCK) {
        __m512 acc[COUT][2];
        dot_block_bf16<CIN, COUT>(rows, wp, x0, wt, bias, acc);
#pragma GCC unroll 8
        for (int o = 0; o < COUT; o += 2)
#pragma GCC unroll 2
            for (int k = 0; k < 2; ++k) {
                __m512 a = acc[o][k], b = acc[o + 1][k];
                if (TANH) {
                    a = (__m512)tanh_v((vf)a);
                    b = (__m512)tanh_v((vf)b);
                } else {
                    a = (__m512)vmax((vf)a, splat(0.0f));
                    b = (__m512)vmax((vf)b, splat(0.0f));
                }
                _mm512_storeu_si512(out + o / 2 * wp + x0 + k * 16, pack_pairs(a, b));
            }
    }
}

// conv3_row in bf16: float32 output, pixel-shuffled.
template <int CIN>
static void conv3_row_bf16(const bf16x2* const rows[3], int wp, int first, int n, const bf16x2* wt,
                           const float* bias, bool clamp, float* out, int64_t plane, int ow) {
    alignas(64) float tmp[12][BLOCK];
    for (int x0 = 0; x0 < n; x0 += BLOCK) {
        __m512 acc[12][2];
        dot_block_bf16<CIN, 12>(rows, wp, first + x0, wt, bias, acc);
#pragma GCC unroll 12
        for (int o = 0; o < 12; ++o)
#pragma GCC unroll 2
            for (int k = 0; k < 2; ++k) {
                vf v = vmax((vf)acc[o][k], splat(0.0f));
                if (clamp) v = vmin(v, splat(1.0f));
                store(&tmp[o][k * 16], v);
            }
        shuffle_store(tmp, std::min(BLOCK, n - x0), out + 2 * x0, plane, ow);
    }
}
#else
#define UNISP_BF16 0
#endif

namespace {

// What run_tile needs from a precision: the element of activation rows (PACK channels each),
// how an input row is stored, and the three convolutions.
struct F32 {
    typedef float T;
    static constexpr int PACK = 1;
    // Planes [4][h][w] at element `at` of row t, columns [from, to) → row [4][wp].
    static void load_input(T* row, int wp, const float* in, int64_t plane, int64_t at, int from, int to) {
        for (int c = 0; c < 4; ++c)
            std::memcpy(row + c * wp + from, in + c * plane + at + from, sizeof(float) * (to - from));
    }
    template <int CIN, int COUT, bool TANH>
    static void conv(const T* const rows[3], int wp, int first, int count, const T* wt, const float* bias, T* out) {
        conv_row<CIN, COUT, TANH>(rows, wp, first, count, wt, bias, out);
    }
    template <int CIN>
    static void conv3(const T* const rows[3], int wp, int first, int n, const T* wt, const float* bias, bool clamp,
                      float* out, int64_t plane, int ow) {
        conv3_row<CIN>(rows, wp, first, n, wt, bias, clamp, out, plane, ow);
    }
};

#if UNISP_BF16
struct BF16 {
    typedef bf16x2 T;
    static constexpr int PACK = 2;
    // Planes 2p and 2p + 1 rounded to bf16 and interleaved into pair row p.
    static void load_input(T* row, int wp, const float* in, int64_t plane, int64_t at, int from, int to) {
        for (int p = 0; p < 2; ++p) {
            const float* a = in + 2 * p * plane + at;
            const float* b = a + plane;
            T* dst = row + p * wp;
            for (int x = from; x < to; x += 16) {
                const __mmask16 m = (__mmask16)(to - x >= 16 ? 0xffff : (1u << (to - x)) - 1);
                _mm512_mask_storeu_epi32(dst + x, m,
                                         pack_pairs(_mm512_maskz_loadu_ps(m, a + x), _mm512_maskz_loadu_ps(m, b + x)));
            }
        }
    }
    template <int CIN, int COUT, bool TANH>
    static void conv(const T* const rows[3], int wp, int first, int count, const T* wt, const float* bias, T* out) {
        conv_row_bf16<CIN, COUT, TANH>(rows, wp, first, count, wt, bias, out);
    }
    template <int CIN>
    static void conv3(const T* const rows[3], int wp, int first, int n, const T* wt, const float* bias, bool clamp,
                      float* out, int64_t plane, int ow) {
        conv3_row_bf16<CIN>(rows, wp, first, n, wt, bias, clamp, out, plane, ow);
    }
};
#endif

// Weights of the three convolutions in the precision's element type, float32 biases.
template <class T>
struct Net {
    const T* w1;
    const float* b1;
    const T* w2;
    const float* b2;
    const T* w3;
    const float* b3;
    bool clamp;
};

static inline int round_up(int v, int m) { return (v + m - 1) / m * m; }

// A ring of three rows of `ch` elements-wide channels (channel pairs in bf16), indexed by image
// row (negative rows allowed).
template <class T>
struct Ring {
    std::vector<T> data;
    int ch, wp;
    Ring(int ch_, int wp_) : data((size_t)3 * ch_ * wp_, T(0)), ch(ch_), wp(wp_) {}
    T* row(int y) { return data.data() + (size_t)(((y % 3) + 3) % 3) * ch * wp; }
    void zero(int y) { std::fill(row(y), row(y) + ch * wp, T(0)); }
    // Zero the local columns [0, left) and [right, wp): the ones outside the image.
    void zero_outside(int y, int left, int right) {
        T* r = row(y);
        for (int c = 0; c < ch; ++c) {
            std::fill(r + c * wp, r + c * wp + std::max(0, std::min(left, wp)), T(0));
            std::fill(r + c * wp + std::max(0, std::min(right, wp)), r + (c + 1) * wp, T(0));
        }
    }
};

// Output rows [ya, yb) and columns [xa, xb) of one image. Local column i is image column
// xa - 3 + i: the input is needed at columns [xa - 3, xb + 3), conv1 at [xa - 2, xb + 2), conv2 at
// [xa - 1, xb + 1). Each layer computes whole vector blocks from its first needed column on;
// columns it computes beyond what is needed only feed outputs that are never stored.
template <class P, int C1, int C2>
void run_tile(const float* in, float* out, int h, int w, const Net<typename P::T>& net, int ya, int yb, int xa, int xb) {
    typedef typename P::T T;
    const int n = xb - xa;
    const int origin = xa - 3;
    const int count1 = round_up(n + 4, BLOCK), count2 = round_up(n + 2, BLOCK);
    const int wp = count1 + BLOCK + 2;  // room for every read of the rounded-up blocks
    const int left = -origin, right = w - origin;  // image columns [0, w) are local [left, right)
    Ring<T> rin(4 / P::PACK, wp), r1(C1 / P::PACK, wp), r2(C2 / P::PACK, wp);
    const int64_t plane_in = (int64_t)h * w;
    const int ow = 2 * w;
    const int64_t plane_out = (int64_t)4 * h * w;
    const int copy_from = std::max(0, left), copy_to = std::min(wp, right);
    for (int t = ya - 3; t <= yb + 2; ++t) {
        // Input row t into the ring (zeros outside the image).
        if (t >= 0 && t < h) {
            P::load_input(rin.row(t), wp, in, plane_in, (int64_t)t * w + origin, copy_from, copy_to);
            rin.zero_outside(t, left, right);
        } else {
            rin.zero(t);
        }
        const int y1 = t - 1;  // conv1 row
        if (y1 >= ya - 2 && y1 <= yb + 1) {
            if (y1 >= 0 && y1 < h) {
                const T* rows[3] = {rin.row(y1 - 1), rin.row(y1), rin.row(y1 + 1)};
                P::template conv<4, C1, true>(rows, wp, 1, count1, net.w1, net.b1, r1.row(y1));
                r1.zero_outside(y1, left, right);
            } else {
                r1.zero(y1);
            }
        }
        const int y2 = t - 2;  // conv2 row
        if (y2 >= ya - 1 && y2 <= yb) {
            if (y2 >= 0 && y2 < h) {
                const T* rows[3] = {r1.row(y2 - 1), r1.row(y2), r1.row(y2 + 1)};
                P::template conv<C1, C2, false>(rows, wp, 2, count2, net.w2, net.b2, r2.row(y2));
                r2.zero_outside(y2, left, right);
            } else {
                r2.zero(y2);
            }
        }
        const int y3 = t - 3;  // output row
        if (y3 >= ya && y3 < yb) {
            const T* rows[3] = {r2.row(y3 - 1), r2.row(y3), r2.row(y3 + 1)};
            P::template conv3<C2>(rows, wp, 3, n, net.w3, net.b3, net.clamp, out + (int64_t)2 * y3 * ow + 2 * xa,
                                  plane_out, ow);
        }
    }
}

template <class P, int C1, int C2>
void run_all(const float* in, float* out, int n, int h, int w, const Net<typename P::T>& net, int threads,
             int band_rows, int strip_cols) {
    const int bands = (h + band_rows - 1) / band_rows;
    const int strips = (w + strip_cols - 1) / strip_cols;
    const int per_image = bands * strips;
    const int jobs = n * per_image;
    std::atomic<int> next(0);
    auto worker = [&]() {
        for (int j; (j = next.fetch_add(1)) < jobs;) {
            const int b = j / per_image, band = j % per_image / strips, strip = j % strips;
            const int ya = band * band_rows, yb = std::min(h, ya + band_rows);
            const int xa = strip * strip_cols, xb = std::min(w, xa + strip_cols);
            run_tile<P, C1, C2>(in + (int64_t)b * 4 * h * w, out + (int64_t)b * 12 * h * w, h, w, net, ya, yb, xa, xb);
        }
    };
    threads = std::max(1, std::min(threads, jobs));
    std::vector<std::thread> pool;
    for (int i = 1; i < threads; ++i) pool.emplace_back(worker);
    worker();
    for (auto& th : pool) th.join();
}

// Runs the instantiated widths; 1 for any other.
template <class P>
int dispatch(const float* in, float* out, int n, int h, int w, int c1, int c2, const Net<typename P::T>& net,
             int threads, int band_rows, int strip_cols) {
    if (c1 == 12 && c2 == 12) {
        run_all<P, 12, 12>(in, out, n, h, w, net, threads, band_rows, strip_cols);
    } else if (c1 == 16 && c2 == 4) {
        run_all<P, 16, 4>(in, out, n, h, w, net, threads, band_rows, strip_cols);
    } else {
        return 1;
    }
    return 0;
}

}  // namespace

extern "C" {

// Floats per vector register this build uses (16: AVX-512, 8: AVX/AVX2, 4: SSE/other).
int unisp_fused_vector_width() { return VW; }

// 1 when this build has the bf16 path (compiled for a CPU with AVX512-BF16), else 0.
int unisp_fused_has_bf16() { return UNISP_BF16; }

// Returns 0 on success, 1 for channel widths this file was not instantiated for.
int unisp_fused_forward(const float* in, float* out, int n, int h, int w, int c1, int c2, const float* w1,
                        const float* b1, const float* w2, const float* b2, const float* w3, const float* b3,
                        int clamp, int threads, int band_rows, int strip_cols) {
    const Net<float> net{w1, b1, w2, b2, w3, b3, clamp != 0};
    return dispatch<F32>(in, out, n, h, w, c1, c2, net, threads, band_rows, strip_cols);
}

// The bf16 variant: weights as bf16 pairs [cin / 2][3][3][cout][2] (uint32 each), biases float32.
// Returns as unisp_fused_forward, or 2 when this build has no bf16 path.
int unisp_fused_forward_bf16(const float* in, float* out, int n, int h, int w, int c1, int c2, const uint32_t* w1,
                             const float* b1, const uint32_t* w2, const float* b2, const uint32_t* w3,
                             const float* b3, int clamp, int threads, int band_rows, int strip_cols) {
#if UNISP_BF16
    const Net<bf16x2> net{w1, b1, w2, b2, w3, b3, clamp != 0};
    return dispatch<BF16>(in, out, n, h, w, c1, c2, net, threads, band_rows, strip_cols);
#else
    (void)in, (void)out, (void)n, (void)h, (void)w, (void)c1, (void)c2, (void)w1, (void)b1, (void)w2, (void)b2;
    (void)w3, (void)b3, (void)clamp, (void)threads, (void)band_rows, (void)strip_cols;
    return 2;
#endif
}
}
