/* flamed's --inline test program: hot work inlined two levels deep into main. */
#include <stdlib.h>

static volatile unsigned long sink;

static inline __attribute__((always_inline)) unsigned long mix(unsigned long x)
{
    for (int i = 0; i < 8; i++)
        x = (x ^ (x >> 31)) * 0xbf58476d1ce4e5b9UL;
    return x;
}

static inline __attribute__((always_inline)) unsigned long step(unsigned long x)
{
    return mix(x ^ (x >> 7));
}

__attribute__((noinline)) unsigned long outer(unsigned long n)
{
    unsigned long x = n;
    for (unsigned long i = 0; i < n; i++)
        x = step(x + i);
    return x;
}

int main(int argc, char **argv)
{
    unsigned long rounds = argc > 1 ? strtoul(argv[1], 0, 10) : 200;
    for (unsigned long r = 0; r < rounds; r++)
        sink += outer(200000 + r) + step(r);
    return 0;
}
