package bench

import (
	"errors"
	"math"
	"math/rand/v2"
)

// ArrivalOffsets returns when each of n requests is sent, in seconds from the
// start, as vllm bench's get_request computes them (vllm/benchmarks/serve.py):
// with an infinite rate every offset is 0; otherwise the gaps are drawn from
// Gamma(shape = burstiness, scale = 1/(rate*burstiness)) (burstiness 1 is a
// Poisson process, an infinite burstiness constant gaps of 1/rate), the
// first request also waits its gap, and the cumulative offsets are scaled so
// that the last one is exactly n/rate (vllm does this so that throughput does
// not vary 1-2% with the seed).
func ArrivalOffsets(rng *rand.Rand, n int, rate, burstiness float64) ([]float64, error) {
	if !(rate > 0) {
		return nil, errors.New("request rate must be positive (inf for all at once)")
	}
	if !(burstiness > 0) {
		return nil, errors.New("burstiness must be positive")
	}
	out := make([]float64, n)
	if math.IsInf(rate, 1) || n == 0 {
		return out, nil
	}
	var t float64
	for i := range out {
		if math.IsInf(burstiness, 1) {
			t += 1 / rate
		} else {
			t += Gamma(rng, burstiness, 1/(rate*burstiness))
		}
		out[i] = t
	}
	if last := out[n-1]; last != 0 {
		f := float64(n) / rate / last
		for i := range out {
			out[i] *= f
		}
	}
	return out, nil
}

// Gamma draws from the gamma distribution with the given shape and scale
// (mean shape*scale, variance shape*scale^2): Marsaglia and Tsang's method
// ("A simple method for generating gamma variables", ACM TOMS 26(3), 2000)
// for shape >= 1, with their boost U^(1/shape) for shape < 1, and the
// exponential itself for shape 1.
func Gamma(rng *rand.Rand, shape, scale float64) float64 {
	if shape == 1 {
		return rng.ExpFloat64() * scale
	}
	boost := 1.0
	if shape < 1 {
		// Gamma(a) = Gamma(a+1) * U^(1/a).
		boost = math.Pow(1-rng.Float64(), 1/shape) // 1-U is in (0, 1]
		shape++
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := 1 - rng.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v * boost * scale
		}
	}
}
