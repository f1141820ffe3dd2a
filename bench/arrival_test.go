package bench

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func meanVar(xs []float64) (float64, float64) {
	var s float64
	for _, x := range xs {
		s += x
	}
	m := s / float64(len(xs))
	var v float64
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	return m, v / float64(len(xs))
}

func TestGammaMoments(t *testing.T) {
	// Gamma(k, theta): mean k*theta, variance k*theta^2. With 200k draws
	// the relative standard error of the mean is 1/sqrt(k*n) and of the
	// variance about sqrt((2+6/k)/n): the tolerances are > 5 of them.
	const n = 200_000
	rng := newRNG(11, 1)
	for _, k := range []float64{0.25, 0.5, 1, 2, 5} {
		theta := 0.3
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = Gamma(rng, k, theta)
			if !(xs[i] > 0) {
				t.Fatalf("Gamma(%v) drew %v", k, xs[i])
			}
		}
		m, v := meanVar(xs)
		assert.InEpsilon(t, k*theta, m, 5/math.Sqrt(k*n)+0.002, "mean, k=%v", k)
		assert.InEpsilon(t, k*theta*theta, v, 5*math.Sqrt((2+6/k)/n)+0.005, "variance, k=%v", k)
	}
}

// gaps are the differences between successive offsets, the first from 0.
func gaps(offsets []float64) []float64 {
	out := make([]float64, len(offsets))
	prev := 0.0
	for i, o := range offsets {
		out[i] = o - prev
		prev = o
	}
	return out
}

func TestArrivalOffsetsPoissonAndGamma(t *testing.T) {
	const n = 100_000
	const rate = 20.0
	for _, b := range []float64{1, 0.5, 4} {
		off, err := ArrivalOffsets(newRNG(5, streamArrivals), n, rate, b)
		require.NoError(t, err)
		// Scaled as vllm scales them: the last request at exactly n/rate.
		assert.InDelta(t, n/rate, off[n-1], 1e-9)
		g := gaps(off)
		for i, x := range g {
			if x < 0 {
				t.Fatalf("offset %d goes back by %v", i, x)
			}
		}
		m, v := meanVar(g)
		assert.InDelta(t, 1/rate, m, 1e-12, "mean gap is exactly 1/rate after scaling, burstiness %v", b)
		// Gap variance 1/(rate^2 * burstiness): Poisson's squared coefficient
		// of variation is 1, burstier arrivals have more, regular ones less.
		cv2 := v / (m * m)
		assert.InEpsilon(t, 1/b, cv2, 5*math.Sqrt((2+6*b)/n)+0.01, "squared CV, burstiness %v", b)
	}
}

func TestArrivalOffsetsEdges(t *testing.T) {
	off, err := ArrivalOffsets(newRNG(1, 1), 5, math.Inf(1), 1)
	require.NoError(t, err)
	assert.Equal(t, []float64{0, 0, 0, 0, 0}, off, "rate inf: all at time 0")

	off, err = ArrivalOffsets(newRNG(1, 1), 4, 2, math.Inf(1))
	require.NoError(t, err)
	assert.InDeltaSlice(t, []float64{0.5, 1, 1.5, 2}, off, 1e-12, "burstiness inf: constant gaps of 1/rate")

	a, _ := ArrivalOffsets(newRNG(3, 1), 50, 7, 1)
	b, _ := ArrivalOffsets(newRNG(3, 1), 50, 7, 1)
	assert.Equal(t, a, b, "same seed, same arrivals")

	for _, bad := range [][2]float64{{0, 1}, {-1, 1}, {math.NaN(), 1}, {1, 0}, {1, -2}} {
		_, err := ArrivalOffsets(newRNG(1, 1), 3, bad[0], bad[1])
		assert.Error(t, err, "%v", bad)
	}
}
