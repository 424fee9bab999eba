/*
 * qsem native kernel: a whole unitary circuit on batched statevectors, forward and adjoint.
 *
 * Called through ctypes (qsem/simulators/native.py) with tensors' data pointers; the
 * module init below only makes the shared object a valid (empty) Python extension, so
 * setuptools builds it at install time. No torch headers: it compiles in about a second.
 *
 * State: B rows of D amplitudes, row-major, wire 0 the most significant digit.
 * Gates, in order: kind 0 = a matrix (dk x dk, row-major, local index in the gate's wire
 * order) on k wires, one matrix for every row (bstride 0) or one per row (bstride dk*dk);
 * kind 1 = a permutation of the whole register, out[i] = in[src[i]].
 *
 * Forward: psi <- G_m ... G_1 psi.  Adjoint (backward), from the final state psi and the
 * incoming gradient lam (torch's convention, as for y = A x: grad_A = grad_y x^H,
 * grad_x = A^H grad_y), walking the gates backwards:
 *     psi_{k-1} = U_k^H psi_k,  grad_U_k += lam_k psi_{k-1}^H,  lam_{k-1} = U_k^H lam_k
 * in one pass over the state per gate; on return lam holds the gradient of the start state.
 * With saves (the state before each matrix gate, written by the forward pass), psi_{k-1}
 * is read from there instead of uncomputed: a third less arithmetic, memory per gate.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <complex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Below this many amplitudes (all rows together) a gate runs on one thread. */
#define PAR_MIN 32768

typedef struct {
    int64_t dk;         /* local dimension */
    int64_t *off;       /* offsets of the dk local basis states */
    int nseg;           /* outer segments; with per-row matrices the batch row is the first */
    int64_t seg_size[66], seg_stride[66];
    int64_t n_outer, inner, inner_stride;
} geom;

/* The gate's offsets, and the untouched index space as segments: runs of untouched wires
 * (the batch row counts as a wire above wire 0 when every row has the same matrix), the
 * longest one the inner loop, the rest an odometer. */
static int make_geom(int n, const int64_t *dims, int k, const int64_t *gw, int64_t B,
                     int per_row, geom *g) {
    int64_t stride[64];
    int touched[64];
    if (n > 64 || k > n) return -1;
    int64_t s = 1;
    for (int w = n - 1; w >= 0; w--) { stride[w] = s; s *= dims[w]; touched[w] = 0; }
    const int64_t D = s;
    g->dk = 1;
    for (int i = 0; i < k; i++) { g->dk *= dims[gw[i]]; touched[gw[i]] = 1; }
    g->off = (int64_t *)malloc(sizeof(int64_t) * (size_t)g->dk);
    if (!g->off) return -1;
    for (int64_t l = 0; l < g->dk; l++) {
        int64_t rem = l, o = 0;
        for (int i = k - 1; i >= 0; i--) {
            o += (rem % dims[gw[i]]) * stride[gw[i]];
            rem /= dims[gw[i]];
        }
        g->off[l] = o;
    }
    int64_t sz[66], st[66];
    int ns = 1, prev_open = !per_row;
    sz[0] = B;
    st[0] = D;
    for (int w = 0; w < n; w++) {
        if (touched[w]) { prev_open = 0; continue; }
        if (prev_open) { sz[ns - 1] *= dims[w]; st[ns - 1] = stride[w]; }
        else { sz[ns] = dims[w]; st[ns] = stride[w]; ns++; }
        prev_open = 1;
    }
    int inner = -1;
    for (int i = per_row ? 1 : 0; i < ns; i++)
        if (inner < 0 || sz[i] > sz[inner]) inner = i;
    if (inner < 0) { sz[ns] = 1; st[ns] = 0; inner = ns++; }
    g->inner = sz[inner];
    g->inner_stride = st[inner];
    g->nseg = 0;
    g->n_outer = 1;
    for (int i = 0; i < ns; i++) {
        if (i == inner) continue;
        g->seg_size[g->nseg] = sz[i];
        g->seg_stride[g->nseg++] = st[i];
        g->n_outer *= sz[i];
    }
    return 0;
}

#define NT_FOR(total) ((nt > 1 && (total) >= PAR_MIN) ? nt : 1)

/* One strip of a gate: the local vectors at row + j*s (j < n) with offsets off. Called with
 * dk a literal (2, 3, 4) the compiler unrolls the local products into registers. */
#define DEFINE_STRIPS(T, SUF)                                                                \
static inline __attribute__((always_inline)) void strip_##SUF(                               \
    T *row, int64_t n, int64_t s, const int64_t *off, const T *m, const int64_t dk, T *heap) { \
    if (dk <= 4) { /* matrix and offsets in locals (registers once dk is a literal) */       \
        T mc[16], a[4];                                                                      \
        int64_t o[4];                                                                        \
        for (int64_t i = 0; i < dk * dk; i++) mc[i] = m[i];                                  \
        for (int64_t l = 0; l < dk; l++) o[l] = off[l];                                      \
        for (int64_t j = 0; j < n; j++) {                                                    \
            T *p = row + j * s;                                                              \
            for (int64_t l = 0; l < dk; l++) a[l] = p[o[l]];                                 \
            for (int64_t r = 0; r < dk; r++) {                                               \
                T acc = 0;                                                                   \
                for (int64_t l = 0; l < dk; l++) acc += mc[r * dk + l] * a[l];               \
                p[o[r]] = acc;                                                               \
            }                                                                                \
        }                                                                                    \
        return;                                                                              \
    }                                                                                        \
    for (int64_t j = 0; j < n; j++) {                                                        \
        T *p = row + j * s;                                                                  \
        for (int64_t l = 0; l < dk; l++) heap[l] = p[off[l]];                                \
        for (int64_t r = 0; r < dk; r++) {                                                   \
            T acc = 0;                                                                       \
            for (int64_t l = 0; l < dk; l++) acc += m[r * dk + l] * heap[l];                 \
            p[off[r]] = acc;                                                                 \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
/* lam <- U^H lam, gm += lam psi^H (lam_k and psi_{k-1}); with unc, psi <- U^H psi first,  \
 * else psi already holds psi_{k-1} (saved by the forward pass) */                           \
static inline __attribute__((always_inline)) void adj_strip_##SUF(                           \
    T *prow, T *qrow, int64_t n, int64_t s, const int64_t *off, const T *m, const int64_t dk, \
    T *gm, T *ha, T *hv, const int unc) {                                                    \
    if (dk <= 4) {                                                                           \
        T h[16], g[16], a[4], v[4];                                                          \
        int64_t o[4];                                                                        \
        for (int64_t r = 0; r < dk; r++)                                                     \
            for (int64_t l = 0; l < dk; l++) { h[r * dk + l] = conj(m[l * dk + r]); g[r * dk + l] = 0; } \
        for (int64_t l = 0; l < dk; l++) o[l] = off[l];                                      \
        for (int64_t j = 0; j < n; j++) {                                                    \
            T *p = prow + j * s, *q = qrow + j * s;                                          \
            for (int64_t l = 0; l < dk; l++) { a[l] = p[o[l]]; v[l] = q[o[l]]; }             \
            T x[4], u[4];                                                                    \
            for (int64_t r = 0; r < dk; r++) {                                               \
                x[r] = unc ? 0 : a[r]; u[r] = 0;                                             \
                for (int64_t l = 0; l < dk; l++) {                                           \
                    if (unc) x[r] += h[r * dk + l] * a[l];                                   \
                    u[r] += h[r * dk + l] * v[l];                                            \
                }                                                                            \
            }                                                                                \
            for (int64_t r = 0; r < dk; r++) { if (unc) p[o[r]] = x[r]; q[o[r]] = u[r]; }    \
            if (gm)                                                                          \
                for (int64_t r = 0; r < dk; r++)                                             \
                    for (int64_t l = 0; l < dk; l++) g[r * dk + l] += v[r] * conj(x[l]);     \
        }                                                                                    \
        if (gm)                                                                              \
            for (int64_t i = 0; i < dk * dk; i++) gm[i] += g[i];                             \
        return;                                                                              \
    }                                                                                        \
    T *a = ha, *v = hv;                                                                      \
    for (int64_t j = 0; j < n; j++) {                                                        \
        T *p = prow + j * s, *q = qrow + j * s;                                              \
        for (int64_t l = 0; l < dk; l++) { a[l] = p[off[l]]; v[l] = q[off[l]]; }             \
        for (int64_t r = 0; r < dk; r++) {                                                   \
            T x = 0, u = 0;                                                                  \
            for (int64_t l = 0; l < dk; l++) {                                               \
                T c = conj(m[l * dk + r]);                                                   \
                x += c * a[l];                                                               \
                u += c * v[l];                                                               \
            }                                                                                \
            if (unc) p[off[r]] = x;                                                          \
            q[off[r]] = u;                                                                   \
        }                                                                                    \
        if (gm) {                                                                            \
            for (int64_t r = 0; r < dk; r++)                                                 \
                for (int64_t l = 0; l < dk; l++) gm[r * dk + l] += v[r] * conj(p[off[l]]);   \
        }                                                                                    \
    }                                                                                        \
}

/* the strip call for the local dimension dk: literal 2, 3, 4, else the general one */
#define DISPATCH(CALL, SUF, dk)                                                              \
    switch (dk) {                                                                            \
    case 2: CALL(SUF, 2); break;                                                             \
    case 3: CALL(SUF, 3); break;                                                             \
    case 4: CALL(SUF, 4); break;                                                             \
    default: CALL(SUF, dk); break;                                                           \
    }

#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_thread_num(void) { return 0; }
static int omp_get_num_threads(void) { return 1; }
#endif

/* The work of one thread: outer positions [u0, u1) (batch row and untouched wires above
 * the inner segment, in order) times inner positions [j0, j1). Many outer positions: they
 * are shared out; few (a large register): the inner segment is. */
typedef struct {
    int64_t u0, u1, j0, j1;
    int ns;                        /* outer segments (geom) */
    int64_t size[66], stride[66], digit[66];
    int64_t base;                  /* flat index of outer position u */
} walk;

static void walk_init(const geom *g, walk *w) {
    int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    const int64_t U = g->n_outer;
    w->ns = g->nseg;
    for (int i = 0; i < g->nseg; i++) {
        w->size[i] = g->seg_size[i];
        w->stride[i] = g->seg_stride[i];
    }
    if (nth == 1 || U >= 4 * nth || g->inner < 4 * nth) {
        w->u0 = U * tid / nth; w->u1 = U * (tid + 1) / nth; w->j0 = 0; w->j1 = g->inner;
    } else {
        w->u0 = 0; w->u1 = U; w->j0 = g->inner * tid / nth; w->j1 = g->inner * (tid + 1) / nth;
    }
    int64_t u = w->u0;
    w->base = 0;
    for (int i = w->ns - 1; i >= 0; i--) {
        w->digit[i] = u % w->size[i];
        w->base += w->digit[i] * w->stride[i];
        u /= w->size[i];
    }
}

static inline void walk_next(walk *w) {
    for (int i = w->ns - 1; i >= 0; i--) {
        w->base += w->stride[i];
        if (++w->digit[i] < w->size[i]) return;
        w->base -= w->size[i] * w->stride[i];
        w->digit[i] = 0;
    }
}

#define STRIP(SUF, K) strip_##SUF(x + w.base + w.j0 * st, len, st, g->off, m, K, tmp)
#define ADJ(SUF, K) adj_strip_##SUF(psi + first, lam + first, len, st, g->off, m, K, gm, a, v, unc)

#define DEFINE_KERNELS(T, SUF)                                                               \
DEFINE_STRIPS(T, SUF)                                                                        \
static void apply_mat_##SUF(T *x, int64_t B, int64_t D, const geom *g, const T *mat,        \
                            int64_t bstride, int nt) {                                       \
    const int64_t dk = g->dk, st = g->inner_stride;                                          \
    _Pragma("omp parallel num_threads(NT_FOR(B * D))")                                       \
    {                                                                                        \
        T *tmp = dk > 4 ? (T *)malloc(sizeof(T) * (size_t)dk) : NULL;                        \
        walk w;                                                                              \
        walk_init(g, &w);                                                              \
        const int64_t len = w.j1 - w.j0;                                                     \
        for (int64_t u = w.u0; u < w.u1; u++, walk_next(&w)) {                               \
            const int64_t row = bstride ? w.digit[0] : 0;                                        \
            const T *m = mat + row * bstride;                                         \
            DISPATCH(STRIP, SUF, dk)                                                         \
        }                                                                                    \
        free(tmp);                                                                           \
    }                                                                                        \
}                                                                                            \
                                                                                             \
static void adjoint_mat_##SUF(T *psi, T *lam, int64_t B, int64_t D, const geom *g,          \
                              const T *mat, int64_t bstride, T *grad, int64_t gsize,         \
                              int unc, int nt) {                                             \
    const int64_t dk = g->dk, st = g->inner_stride;                                          \
    _Pragma("omp parallel num_threads(NT_FOR(B * D))")                                       \
    {                                                                                        \
        const int nth = omp_get_num_threads();                                               \
        T *acc = grad;                                                                       \
        if (grad && nth > 1) acc = (T *)calloc((size_t)gsize, sizeof(T));                    \
        T *a = NULL, *v = NULL;                                                              \
        if (dk > 4) {                                                                        \
            a = (T *)malloc(sizeof(T) * (size_t)dk);                                         \
            v = (T *)malloc(sizeof(T) * (size_t)dk);                                         \
        }                                                                                    \
        walk w;                                                                              \
        walk_init(g, &w);                                                              \
        const int64_t len = w.j1 - w.j0;                                                     \
        for (int64_t u = w.u0; u < w.u1; u++, walk_next(&w)) {                               \
            const int64_t row = bstride ? w.digit[0] : 0;                                        \
            const T *m = mat + row * bstride;                                         \
            T *gm = acc ? acc + row * bstride : NULL;                                 \
            const int64_t first = w.base + w.j0 * st;                                        \
            DISPATCH(ADJ, SUF, dk)                                                           \
        }                                                                                    \
        free(a);                                                                             \
        free(v);                                                                             \
        if (grad && nth > 1) {                                                               \
            _Pragma("omp critical")                                                          \
            for (int64_t i = 0; i < gsize; i++) grad[i] += acc[i];                           \
            free(acc);                                                                       \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* out[b, i] = x[b, src[i]] (inverse: out[b, src[i]] = x[b, i]), then copied back */         \
static void permute_##SUF(T *x, T *scratch, int64_t B, int64_t D, const int64_t *src,       \
                          int inverse, int nt) {                                             \
    _Pragma("omp parallel for schedule(static) num_threads(NT_FOR(B * D))")                  \
    for (int64_t b = 0; b < B; b++) {                                                        \
        T *in = x + b * D, *out = scratch + b * D;                                           \
        if (inverse) for (int64_t i = 0; i < D; i++) out[src[i]] = in[i];                    \
        else for (int64_t i = 0; i < D; i++) out[i] = in[src[i]];                            \
    }                                                                                        \
    memcpy(x, scratch, sizeof(T) * (size_t)(B * D));                                        \
}                                                                                            \
                                                                                             \
int qsem_forward_##SUF(T *x, T *scratch, int64_t B, int n, const int64_t *dims,             \
                       int ngates, const int32_t *kinds, const int64_t *wire_ptr,            \
                       const int64_t *wires, void *const *mats, const int64_t *bstrides,     \
                       T *saves, int nt) {                                                   \
    int64_t D = 1, slot = 0;                                                                 \
    for (int w = 0; w < n; w++) D *= dims[w];                                                \
    for (int k = 0; k < ngates; k++) {                                                       \
        if (saves && kinds[k] == 0)                                                          \
            memcpy(saves + (slot++) * B * D, x, sizeof(T) * (size_t)(B * D));                \
        if (kinds[k] == 1) { permute_##SUF(x, scratch, B, D, (const int64_t *)mats[k], 0, nt); continue; } \
        geom g;                                                                              \
        if (make_geom(n, dims, (int)(wire_ptr[k + 1] - wire_ptr[k]), wires + wire_ptr[k], B,  \
                      bstrides[k] != 0, &g))                                                 \
            return -1;                                                                       \
        apply_mat_##SUF(x, B, D, &g, (const T *)mats[k], bstrides[k], nt);                  \
        free(g.off);                                                                         \
    }                                                                                        \
    return 0;                                                                                \
}                                                                                            \
                                                                                             \
int qsem_adjoint_##SUF(T *psi, T *lam, T *scratch, int64_t B, int n, const int64_t *dims,   \
                       int ngates, const int32_t *kinds, const int64_t *wire_ptr,            \
                       const int64_t *wires, void *const *mats, const int64_t *bstrides,     \
                       void *const *grads, const int64_t *gsizes, T *saves, int nt) {        \
    int64_t D = 1, slot = 0;                                                                 \
    for (int w = 0; w < n; w++) D *= dims[w];                                                \
    for (int k = 0; k < ngates; k++) slot += kinds[k] == 0;                                  \
    for (int k = ngates - 1; k >= 0; k--) {                                                  \
        if (kinds[k] == 1) {                                                                 \
            if (!saves) permute_##SUF(psi, scratch, B, D, (const int64_t *)mats[k], 1, nt);  \
            permute_##SUF(lam, scratch, B, D, (const int64_t *)mats[k], 1, nt);              \
            continue;                                                                        \
        }                                                                                    \
        geom g;                                                                              \
        if (make_geom(n, dims, (int)(wire_ptr[k + 1] - wire_ptr[k]), wires + wire_ptr[k], B,  \
                      bstrides[k] != 0, &g))                                                 \
            return -1;                                                                       \
        T *before = saves ? saves + (--slot) * B * D : psi;                                  \
        adjoint_mat_##SUF(before, lam, B, D, &g, (const T *)mats[k], bstrides[k],            \
                          (T *)grads[k], gsizes[k], saves == NULL, nt);                      \
        free(g.off);                                                                         \
    }                                                                                        \
    return 0;                                                                                \
}

DEFINE_KERNELS(double complex, c128)
DEFINE_KERNELS(float complex, c64)

/* The calling convention's version: qsem.simulators.native refuses a library of another
 * (a stale build), so bump it with every change of a signature. */
int qsem_native_version(void) { return 2; }

static struct PyModuleDef qsem_native_module = {
    PyModuleDef_HEAD_INIT, "_qsem_native",
    "qsem's native circuit kernel (used through ctypes; see qsem.simulators.native)", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__qsem_native(void) { return PyModule_Create(&qsem_native_module); }
