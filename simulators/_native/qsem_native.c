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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <complex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Below this many amplitudes (all rows together) a gate runs on one thread. */
#define PAR_MIN 32768
/* Rows of the inner loop handled by one task. */
#define CHUNK 4096

typedef struct {
    int64_t dk;         /* local dimension */
    int64_t *off;       /* offsets of the dk local basis states */
    int nseg;           /* outer segments (untouched wires above the inner segment) */
    int64_t seg_size[64], seg_stride[64];
    int64_t n_outer, inner, inner_stride, nchunk;
} geom;

static int make_geom(int n, const int64_t *dims, int k, const int64_t *gw, geom *g) {
    int64_t stride[64];
    int touched[64];
    if (n > 64 || k > n) return -1;
    int64_t s = 1;
    for (int w = n - 1; w >= 0; w--) { stride[w] = s; s *= dims[w]; touched[w] = 0; }
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
    /* segments: runs of untouched wires, most significant first */
    int64_t sz[65], st[65];
    int ns = 0;
    for (int w = 0; w < n; w++) {
        if (touched[w]) continue;
        if (w > 0 && !touched[w - 1] && ns > 0) { sz[ns - 1] *= dims[w]; st[ns - 1] = stride[w]; }
        else { sz[ns] = dims[w]; st[ns] = stride[w]; ns++; }
    }
    if (ns == 0) { sz[0] = 1; st[0] = 0; ns = 1; }
    g->inner = sz[ns - 1];
    g->inner_stride = st[ns - 1];
    g->nseg = ns - 1;
    g->n_outer = 1;
    for (int i = 0; i < ns - 1; i++) {
        g->seg_size[i] = sz[i]; g->seg_stride[i] = st[i]; g->n_outer *= sz[i];
    }
    g->nchunk = (g->inner + CHUNK - 1) / CHUNK;
    return 0;
}

static inline int64_t outer_base(const geom *g, int64_t o) {
    int64_t base = 0;
    for (int i = g->nseg - 1; i >= 0; i--) {
        base += (o % g->seg_size[i]) * g->seg_stride[i];
        o /= g->seg_size[i];
    }
    return base;
}

#define NT_FOR(total) ((nt > 1 && (total) >= PAR_MIN) ? nt : 1)

#define DEFINE_KERNELS(T, SUF)                                                               \
static void apply_mat_##SUF(T *x, int64_t B, int64_t D, const geom *g, const T *mat,        \
                            int64_t bstride, int nt) {                                       \
    const int64_t dk = g->dk, tasks = B * g->n_outer * g->nchunk;                            \
    _Pragma("omp parallel for schedule(static) num_threads(NT_FOR(B * D))")                  \
    for (int64_t t = 0; t < tasks; t++) {                                                    \
        T tmp[dk];                                                                           \
        const int64_t c = t % g->nchunk, bo = t / g->nchunk;                                 \
        const int64_t b = bo / g->n_outer, o = bo % g->n_outer;                              \
        const T *m = mat + b * bstride;                                                      \
        T *row = x + b * D + outer_base(g, o);                                               \
        const int64_t j1 = (c + 1) * CHUNK < g->inner ? (c + 1) * CHUNK : g->inner;         \
        for (int64_t j = c * CHUNK; j < j1; j++) {                                           \
            T *p = row + j * g->inner_stride;                                                \
            for (int64_t l = 0; l < dk; l++) tmp[l] = p[g->off[l]];                          \
            for (int64_t r = 0; r < dk; r++) {                                               \
                T acc = 0;                                                                   \
                for (int64_t l = 0; l < dk; l++) acc += m[r * dk + l] * tmp[l];              \
                p[g->off[r]] = acc;                                                          \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* psi <- U^H psi, grad += lam psi^H (after), lam <- U^H lam: one pass */                    \
static void adjoint_mat_##SUF(T *psi, T *lam, int64_t B, int64_t D, const geom *g,          \
                              const T *mat, int64_t bstride, T *grad, int64_t gsize,         \
                              int nt) {                                                      \
    const int64_t dk = g->dk, tasks = B * g->n_outer * g->nchunk;                            \
    const int threads = NT_FOR(B * D);                                                       \
    _Pragma("omp parallel num_threads(threads)")                                             \
    {                                                                                        \
        T *acc = grad;                                                                       \
        if (grad && threads > 1) acc = (T *)calloc((size_t)gsize, sizeof(T));                \
        T a[dk], v[dk];                                                                      \
        _Pragma("omp for schedule(static)")                                                  \
        for (int64_t t = 0; t < tasks; t++) {                                                \
            const int64_t c = t % g->nchunk, bo = t / g->nchunk;                             \
            const int64_t b = bo / g->n_outer, o = bo % g->n_outer;                          \
            const T *m = mat + b * bstride;                                                  \
            T *gm = acc ? acc + b * bstride : NULL;                                          \
            const int64_t base = b * D + outer_base(g, o);                                   \
            const int64_t j1 = (c + 1) * CHUNK < g->inner ? (c + 1) * CHUNK : g->inner;     \
            for (int64_t j = c * CHUNK; j < j1; j++) {                                       \
                T *p = psi + base + j * g->inner_stride;                                     \
                T *q = lam + base + j * g->inner_stride;                                     \
                for (int64_t l = 0; l < dk; l++) { a[l] = p[g->off[l]]; v[l] = q[g->off[l]]; } \
                for (int64_t r = 0; r < dk; r++) {                                           \
                    T s = 0, u = 0;                                                          \
                    for (int64_t l = 0; l < dk; l++) {                                       \
                        T h = conj(m[l * dk + r]);                                           \
                        s += h * a[l];                                                       \
                        u += h * v[l];                                                       \
                    }                                                                        \
                    p[g->off[r]] = s;                                                        \
                    q[g->off[r]] = u;                                                        \
                }                                                                            \
                if (gm) {                                                                    \
                    for (int64_t r = 0; r < dk; r++)                                         \
                        for (int64_t l = 0; l < dk; l++)                                     \
                            gm[r * dk + l] += v[r] * conj(p[g->off[l]]);                     \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        if (grad && threads > 1) {                                                           \
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
                       int nt) {                                                             \
    int64_t D = 1;                                                                           \
    for (int w = 0; w < n; w++) D *= dims[w];                                                \
    for (int k = 0; k < ngates; k++) {                                                       \
        if (kinds[k] == 1) { permute_##SUF(x, scratch, B, D, (const int64_t *)mats[k], 0, nt); continue; } \
        geom g;                                                                              \
        if (make_geom(n, dims, (int)(wire_ptr[k + 1] - wire_ptr[k]), wires + wire_ptr[k], &g)) \
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
                       void *const *grads, const int64_t *gsizes, int nt) {                  \
    int64_t D = 1;                                                                           \
    for (int w = 0; w < n; w++) D *= dims[w];                                                \
    for (int k = ngates - 1; k >= 0; k--) {                                                  \
        if (kinds[k] == 1) {                                                                 \
            permute_##SUF(psi, scratch, B, D, (const int64_t *)mats[k], 1, nt);              \
            permute_##SUF(lam, scratch, B, D, (const int64_t *)mats[k], 1, nt);              \
            continue;                                                                        \
        }                                                                                    \
        geom g;                                                                              \
        if (make_geom(n, dims, (int)(wire_ptr[k + 1] - wire_ptr[k]), wires + wire_ptr[k], &g)) \
            return -1;                                                                       \
        adjoint_mat_##SUF(psi, lam, B, D, &g, (const T *)mats[k], bstrides[k],               \
                          (T *)grads[k], gsizes[k], nt);                                     \
        free(g.off);                                                                         \
    }                                                                                        \
    return 0;                                                                                \
}

DEFINE_KERNELS(double complex, c128)
DEFINE_KERNELS(float complex, c64)

int qsem_native_version(void) { return 1; }

static struct PyModuleDef qsem_native_module = {
    PyModuleDef_HEAD_INIT, "_qsem_native",
    "qsem's native circuit kernel (used through ctypes; see qsem.simulators.native)", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__qsem_native(void) { return PyModule_Create(&qsem_native_module); }
