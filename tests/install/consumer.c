/* Builds against an installed kiln (pkg-config or find_package) and runs a GEMM on the
   backend the environment selects. */
#include <stdio.h>

#include <kiln/kiln.h>

int main(void) {
    kiln_backend_t be;
    if (kiln_backend_init_from_env(&be) != KILN_OK) {
        fprintf(stderr, "%s\n", kiln_last_error());
        return 1;
    }
    float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8}, c[4];
    int64_t shape[2] = {2, 2};
    kiln_tensor ta, tb, tc;
    kiln_status st = kiln_tensor_alloc(&ta, be, KILN_F32, 2, shape);
    if (!st) st = kiln_tensor_alloc(&tb, be, KILN_F32, 2, shape);
    if (!st) st = kiln_tensor_alloc(&tc, be, KILN_F32, 2, shape);
    if (!st) st = kiln_tensor_set(&ta, a, sizeof a);
    if (!st) st = kiln_tensor_set(&tb, b, sizeof b);
    if (!st) st = kiln_gemm(be, 0, 0, 1.0f, &ta, &tb, 0.0f, &tc);
    if (!st) st = kiln_tensor_get(&tc, c, sizeof c);
    if (st) {
        fprintf(stderr, "%s: %s\n", kiln_status_name(st), kiln_last_error());
        return 1;
    }
    printf("%s: [%g %g; %g %g]\n", kiln_backend_name(be), c[0], c[1], c[2], c[3]);
    kiln_tensor_release(&ta);
    kiln_tensor_release(&tb);
    kiln_tensor_release(&tc);
    kiln_backend_free(be);
    return c[0] == 19 && c[1] == 22 && c[2] == 43 && c[3] == 50 ? 0 : 1;
}
