/* Mamba's selective scan as one fused CPU kernel: the state never goes to main memory.
 *
 *     a_t = exp(delta_t A),   h_t = a_t h_{t-1} + delta_t u_t B_t,   y_t = C_t h_t
 *
 * per batch row b, day t, channel d and state n (A is (D, N); B_t and C_t are shared by the D
 * channels). This is the CPU analogue of the hardware-aware scan of Gu & Dao (2023), section 3.3:
 * the chunked scan in selective_scan.py writes the (B, L, D, N) state to memory several times,
 * forward and backward, and is bound by that traffic; here the state of one row lives in a (D, N)
 * buffer that stays in cache, the forward pass keeps only the state entering each chunk of T days
 * (checkpoints, 1/T of the full size), and the backward pass recomputes one chunk of states at a
 * time from its checkpoint and runs the reverse scan over it:
 *
 *     g_t = C_t dy_t + a_{t+1} g_{t+1},   dL/d(log a_t) = g_t h_{t-1} a_t.
 *
 * Built by fused_build.py with the system C compiler on first use, once per machine (then cached),
 * once with REAL=float (EXP=expf) and once with REAL=double (EXP=exp). Every array is contiguous
 * and row-major. The batch rows are shared out among n_threads OpenMP threads (built with -fopenmp,
 * the runtime is the one PyTorch already loaded, so its idle threads do the work); each row is
 * written by one thread only, so the result does not depend on the number of threads. Returns 0, or
 * -1 when a work buffer cannot be allocated.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void forward_row(int64_t b, int64_t L, int64_t D, int64_t N, int64_t T, const REAL *u,
                        const REAL *delta, const REAL *A, const REAL *B, const REAL *C, REAL *y,
                        REAL *checkpoints, REAL *h)
{
    int64_t DN = D * N, n_chunks = (L + T - 1) / T;
    memset(h, 0, sizeof(REAL) * DN);
    for (int64_t t = 0; t < L; t++) {
        if (t % T == 0) /* the state entering chunk t / T */
            memcpy(checkpoints + (b * n_chunks + t / T) * DN, h, sizeof(REAL) * DN);
        int64_t bt = b * L + t;
        const REAL *B_t = B + bt * N, *C_t = C + bt * N;
        for (int64_t d = 0; d < D; d++) {
            REAL dt = delta[bt * D + d], x = dt * u[bt * D + d], acc = 0;
            REAL *h_d = h + d * N;
            const REAL *A_d = A + d * N;
#pragma omp simd reduction(+ : acc)
            for (int64_t n = 0; n < N; n++) {
                REAL v = EXP(dt * A_d[n]) * h_d[n] + x * B_t[n];
                h_d[n] = v;
                acc += C_t[n] * v;
            }
            y[bt * D + d] = acc;
        }
    }
}

static void backward_row(int64_t b, int64_t L, int64_t D, int64_t N, int64_t T, const REAL *u,
                         const REAL *delta, const REAL *A, const REAL *B, const REAL *C,
                         const REAL *checkpoints, const REAL *grad_y, REAL *grad_u, REAL *grad_delta,
                         REAL *grad_A_rows, REAL *grad_B, REAL *grad_C, REAL *h, REAL *a, REAL *carry,
                         REAL *gB)
{
    int64_t DN = D * N, n_chunks = (L + T - 1) / T;
    REAL *gC = gB + N;
    REAL *gA = grad_A_rows + b * DN; /* this row's share of dL/dA, summed by the caller */
    memset(gA, 0, sizeof(REAL) * DN);
    memset(carry, 0, sizeof(REAL) * DN);
    for (int64_t c = n_chunks - 1; c >= 0; c--) {
        int64_t t0 = c * T, t1 = t0 + T < L ? t0 + T : L;
        const REAL *h_in = checkpoints + (b * n_chunks + c) * DN; /* h_{t0 - 1} */
        for (int64_t t = t0; t < t1; t++) { /* recompute the chunk's decays and states */
            int64_t bt = b * L + t;
            REAL *h_t = h + (t - t0) * DN, *a_t = a + (t - t0) * DN;
            const REAL *h_prev = t == t0 ? h_in : h_t - DN, *B_t = B + bt * N;
            for (int64_t d = 0; d < D; d++) {
                REAL dt = delta[bt * D + d], x = dt * u[bt * D + d];
#pragma omp simd
                for (int64_t n = 0; n < N; n++) {
                    int64_t i = d * N + n;
                    a_t[i] = EXP(dt * A[i]);
                    h_t[i] = a_t[i] * h_prev[i] + x * B_t[n];
                }
            }
        }
        for (int64_t t = t1 - 1; t >= t0; t--) { /* the reverse scan over the chunk */
            int64_t bt = b * L + t;
            const REAL *h_t = h + (t - t0) * DN, *a_t = a + (t - t0) * DN;
            const REAL *h_prev = t == t0 ? h_in : h_t - DN, *B_t = B + bt * N, *C_t = C + bt * N;
            memset(gB, 0, sizeof(REAL) * 2 * N);
            for (int64_t d = 0; d < D; d++) {
                REAL gy = grad_y[bt * D + d], dt = delta[bt * D + d], ud = u[bt * D + d];
                REAL x = dt * ud, g_x = 0, g_log_dt = 0;
#pragma omp simd reduction(+ : g_x, g_log_dt)
                for (int64_t n = 0; n < N; n++) {
                    int64_t i = d * N + n;
                    REAL g = gy * C_t[n] + carry[i];       /* g_t = dL/d(b_t) */
                    REAL g_log_a = g * h_prev[i] * a_t[i]; /* dL/d(delta_t A) */
                    gC[n] += gy * h_t[i];
                    gB[n] += g * x;
                    g_x += g * B_t[n];
                    g_log_dt += g_log_a * A[i];
                    gA[i] += g_log_a * dt;
                    carry[i] = a_t[i] * g;
                }
                grad_u[bt * D + d] = g_x * dt;
                grad_delta[bt * D + d] = g_log_dt + g_x * ud;
            }
            memcpy(grad_B + bt * N, gB, sizeof(REAL) * N);
            memcpy(grad_C + bt * N, gC, sizeof(REAL) * N);
        }
    }
}

int scan_forward(int64_t n_threads, int64_t batch, int64_t L, int64_t D, int64_t N, int64_t T,
                 const REAL *u, const REAL *delta, const REAL *A, const REAL *B, const REAL *C, REAL *y,
                 REAL *checkpoints)
{
    int failed = 0;
#pragma omp parallel num_threads(n_threads) reduction(| : failed)
    {
        REAL *h = malloc(sizeof(REAL) * D * N); /* (D, N): the state of one batch row */
        failed = !h;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < batch; b++)
            if (h) forward_row(b, L, D, N, T, u, delta, A, B, C, y, checkpoints, h);
        free(h);
    }
    return failed ? -1 : 0;
}

int scan_backward(int64_t n_threads, int64_t batch, int64_t L, int64_t D, int64_t N, int64_t T,
                  const REAL *u, const REAL *delta, const REAL *A, const REAL *B, const REAL *C,
                  const REAL *checkpoints, const REAL *grad_y, REAL *grad_u, REAL *grad_delta,
                  REAL *grad_A_rows, REAL *grad_B, REAL *grad_C)
{
    int failed = 0;
#pragma omp parallel num_threads(n_threads) reduction(| : failed)
    {
        int64_t DN = D * N;
        REAL *h = malloc(sizeof(REAL) * T * DN); /* (T, D, N): the states of one chunk, recomputed */
        REAL *a = malloc(sizeof(REAL) * T * DN); /* (T, D, N): its decays */
        REAL *carry = malloc(sizeof(REAL) * DN); /* (D, N): a_{t+1} g_{t+1} */
        REAL *gB = malloc(sizeof(REAL) * 2 * N); /* (N,) twice: dL/dB_t and dL/dC_t, summed over d */
        int ok = h && a && carry && gB;
        failed = !ok;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < batch; b++)
            if (ok)
                backward_row(b, L, D, N, T, u, delta, A, B, C, checkpoints, grad_y, grad_u, grad_delta,
                             grad_A_rows, grad_B, grad_C, h, a, carry, gB);
        free(h), free(a), free(carry), free(gB);
    }
    return failed ? -1 : 0;
}
