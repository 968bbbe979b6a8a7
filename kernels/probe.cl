/* Driver self-checks, run once per backend before kernels that depend on the property.
 *
 * kiln_loop_probe: one work-item runs a loop of n iterations with a run-time trip count and
 * stores how many it completed. A conformant implementation stores n. Mesa's llvmpipe
 * (rusticl, Mesa 22.3) caps the loop iterations of a work-item at 65535 in all (gallivm's
 * loop limiter, shared by nested loops) and silently leaves the loop, so a long reduction
 * returns a partial sum; the count it stores is that cap. The loads keep the loop from being
 * folded into a closed form. */
__kernel void kiln_loop_probe(const __global uint *ones, uint n, __global uint *out) {
    uint count = 0;
    for (uint i = 0; i < n; i++)
        count += ones[i & 15u];
    out[0] = count;
}
