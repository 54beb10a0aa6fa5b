// How native/kernels/ref/rtquant_ref.cpp's GS43 sequences were found: simulated annealing over four ±1
// sequences of length 43 until their periodic autocorrelations sum to zero at every nonzero shift (the
// Goethals–Seidel ingredients of a Hadamard matrix of order 172). Not part of the build; run:
//   gcc -O2 -o /tmp/gs scripts/hadamard-search.c -lm && /tmp/gs 7   (minutes on one core; prints 4 lines)
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <time.h>
#define N 43
static int x[4][N];
static long paf[N];  // sum over sequences of periodic autocorrelation at shift s
static unsigned long long rs = 88172645463325252ULL;
static inline unsigned long long rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static long cost(void) { long c = 0; for (int s = 1; s <= N / 2; s++) c += paf[s] * paf[s]; return c; }
static void compute(void) {
  for (int s = 0; s < N; s++) { long t = 0; for (int k = 0; k < 4; k++) for (int i = 0; i < N; i++) t += x[k][i] * x[k][(i + s) % N]; paf[s] = t; }
}
int main(int argc, char** argv) {
  rs ^= (unsigned long long)time(NULL) * 2654435761ULL + (argc > 1 ? atoi(argv[1]) : 0);
  double T0 = 40;
  for (long restart = 0;; restart++) {
    for (int k = 0; k < 4; k++) for (int i = 0; i < N; i++) x[k][i] = (rnd() & 1) ? 1 : -1;
    compute();
    long c = cost();
    double T = T0;
    for (long it = 0; it < 3000000; it++) {
      int k = rnd() % 4, i = rnd() % N;
      // delta of paf[s] when flipping x[k][i]: -2*x[k][i]*(x[k][i+s] + x[k][i-s])
      long np[N / 2 + 1]; long nc = 0;
      for (int s = 1; s <= N / 2; s++) {
        long d = -2L * x[k][i] * (x[k][(i + s) % N] + x[k][(i - s + N) % N]);
        np[s] = paf[s] + d; nc += np[s] * np[s];
      }
      if (nc <= c || exp((c - nc) / T) > (rnd() % 1000000) / 1e6) {
        x[k][i] = -x[k][i];
        for (int s = 1; s <= N / 2; s++) { paf[s] = np[s]; paf[N - s] = np[s]; }
        c = nc;
        if (c == 0) {
          for (int kk = 0; kk < 4; kk++) { for (int j = 0; j < N; j++) putchar(x[kk][j] > 0 ? '+' : '-'); putchar('\n'); }
          fflush(stdout); return 0;
        }
      }
      T *= 0.999997; if (T < 0.5) T = 0.5;
    }
  }
}
