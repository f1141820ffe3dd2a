package labelguard

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"
)

// memShared is one shared-data key with the semantics of proxy-wasm-cpp-host
// src/shared_data.cc: a process-wide CAS counter that skips 0; a write with
// a non-zero CAS must match; a write to a missing key ignores its CAS.
type memShared struct {
	value   []byte
	cas     uint32
	nextCas uint32
	found   bool

	getErr, setErr error
	// beforeSet runs inside Set before the CAS check: another VM's turn.
	beforeSet func()

	gets, sets, mismatches int
}

func newMemShared() *memShared { return &memShared{nextCas: 1} }

func (s *memShared) Get() ([]byte, uint32, bool, error) {
	s.gets++
	if s.getErr != nil {
		return nil, 0, false, s.getErr
	}
	if !s.found {
		return nil, 0, false, nil
	}
	return append([]byte(nil), s.value...), s.cas, true, nil
}

func (s *memShared) Set(v []byte, cas uint32) error {
	if s.beforeSet != nil {
		hook := s.beforeSet
		s.beforeSet = nil // the hook's own writes do not re-enter it
		hook()
		s.beforeSet = hook
	}
	s.sets++
	if s.setErr != nil {
		return s.setErr
	}
	if s.found && cas != 0 && cas != s.cas {
		s.mismatches++
		return ErrCasMismatch
	}
	s.value, s.cas, s.found = append([]byte(nil), v...), s.nextCas, true
	if s.nextCas++; s.nextCas == 0 {
		s.nextCas++
	}
	return nil
}

func (s *memShared) pairs(t *testing.T) [][2]string {
	t.Helper()
	p, err := decodeAll(s.value)
	require.NoError(t, err)
	return p
}

func labels(g *Guard, model, target string) [3]string {
	m, tm, v := g.Labels(model, target)
	return [3]string{m, tm, fmt.Sprint(v)}
}

func (v Verdict) String() string {
	return [...]string{"Kept", "Replaced", "OverLimit", "Contended", "Unavailable"}[v]
}

func TestGuardFirstComeFirstServed(t *testing.T) {
	sh := newMemShared()
	g := NewGuard(3, nil, sh)
	require.NoError(t, g.Start())
	for i := range 3 {
		require.Equal(t, [3]string{fmt.Sprint("m", i), "t", "Kept"}, labels(g, fmt.Sprint("m", i), "t"))
	}
	require.Equal(t, [3]string{Other, Other, "OverLimit"}, labels(g, "m9", "t"))
	require.Equal(t, [3]string{"m1", "t", "Kept"}, labels(g, "m1", "t"), "admitted earlier: still itself")
	for i := range 10000 {
		g.Labels(fmt.Sprint("r", i), fmt.Sprint("s", i))
	}
	require.Equal(t, 3, g.Admitted())
	require.Equal(t, [][2]string{{"m0", "t"}, {"m1", "t"}, {"m2", "t"}}, sh.pairs(t))
	// Sanitised before admission: a hostile value is one safe pair.
	g2 := NewGuard(3, nil, newMemShared())
	require.Equal(t, [3]string{"a_b", Unknown, "Kept"}, labels(g2, "a;b", ""))
	// (other, other) is the overflow series: never an entry, always allowed.
	require.Equal(t, [3]string{Other, Other, "Kept"}, labels(g2, "other", "other"))
	require.Equal(t, 1, g2.Admitted())
}

func TestGuardAllowlist(t *testing.T) {
	g := NewGuard(100, []string{"llama", "sql-lora"}, newMemShared())
	require.Equal(t, [3]string{"llama", "sql-lora", "Kept"}, labels(g, "llama", "sql-lora"))
	require.Equal(t, [3]string{Other, "llama", "Replaced"}, labels(g, "random", "llama"))
	require.Equal(t, [3]string{Other, Other, "Replaced"}, labels(g, "x", "y"))
	require.Equal(t, 2, g.Admitted(), "(other, other) takes no slot")
}

// Four VMs, one shared set: the limit is the proxy's.
func TestGuardSharedAcrossVMs(t *testing.T) {
	sh := newMemShared()
	vms := make([]*Guard, 4)
	for i := range vms {
		vms[i] = NewGuard(3, nil, sh)
		require.NoError(t, vms[i].Start())
	}
	require.Equal(t, 1, sh.sets, "only the first VM creates the set")
	require.Equal(t, [3]string{"a", "t", "Kept"}, labels(vms[0], "a", "t"))
	require.Equal(t, [3]string{"b", "t", "Kept"}, labels(vms[1], "b", "t"))
	require.Equal(t, [3]string{"a", "t", "Kept"}, labels(vms[2], "a", "t"), "admitted by another VM")
	require.Equal(t, [3]string{"c", "t", "Kept"}, labels(vms[3], "c", "t"))
	for i, g := range vms {
		require.Equal(t, [3]string{Other, Other, "OverLimit"}, labels(g, fmt.Sprint("d", i), "t"), "vm %d", i)
	}
	require.Equal(t, [][2]string{{"a", "t"}, {"b", "t"}, {"c", "t"}}, sh.pairs(t))
	// Every VM learns the whole set on a miss, without writing.
	sets := sh.sets
	require.Equal(t, [3]string{"c", "t", "Kept"}, labels(vms[1], "c", "t"))
	require.Equal(t, sets, sh.sets)
}

// A pair a VM knows costs no host call; once the set is full, neither does
// a new one.
func TestGuardReadsSharedDataOnlyOnAMiss(t *testing.T) {
	sh := newMemShared()
	g := NewGuard(2, nil, sh)
	require.NoError(t, g.Start())
	g.Labels("a", "t")
	gets := sh.gets
	for range 100 {
		g.Labels("a", "t")
	}
	require.Equal(t, gets, sh.gets, "a hit reads nothing")
	NewGuard(2, nil, sh).Labels("b", "t") // another VM fills the set
	require.Equal(t, [3]string{Other, Other, "OverLimit"}, labels(g, "c", "t"))
	gets = sh.gets
	for i := range 100 {
		require.Equal(t, [3]string{Other, Other, "OverLimit"}, labels(g, fmt.Sprint("n", i), "t"))
	}
	require.Equal(t, gets, sh.gets, "a full set is never re-read")
	require.Equal(t, [3]string{"b", "t", "Kept"}, labels(g, "b", "t"), "learnt from the read that found it full")
}

// Another VM writes between this VM's read and its write: the write fails
// with CasMismatch and is retried on a fresh read, CASAttempts times at most.
func TestGuardCompareAndSwap(t *testing.T) {
	for _, tc := range []struct {
		name       string
		limit      int
		interlopes int // writes by other VMs, one before each of our first writes
		want       [3]string
		wantSet    int // pairs in the shared set afterwards
	}{
		{"no contention", 10, 0, [3]string{"mine", "t", "Kept"}, 1},
		{"one lost race", 10, 1, [3]string{"mine", "t", "Kept"}, 2},
		{"lost all but the last attempt", 10, CASAttempts - 1, [3]string{"mine", "t", "Kept"}, CASAttempts},
		{"lost every attempt", 10, CASAttempts, [3]string{Other, Other, "Contended"}, CASAttempts},
		{"the others fill the set", 2, 2, [3]string{Other, Other, "OverLimit"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sh := newMemShared()
			g, other := NewGuard(tc.limit, nil, sh), NewGuard(tc.limit, nil, sh)
			require.NoError(t, g.Start())
			n := 0
			sh.beforeSet = func() {
				if n < tc.interlopes {
					n++
					other.Labels(fmt.Sprint("theirs", n), "t")
				}
			}
			require.Equal(t, tc.want, labels(g, "mine", "t"))
			require.Len(t, sh.pairs(t), tc.wantSet)
			require.LessOrEqual(t, len(sh.pairs(t)), tc.limit)
			require.Equal(t, min(tc.interlopes, CASAttempts), sh.mismatches, "each interloper costs one failed write")
		})
	}
}

// A VM decodes only what was appended since it last read the set; a set
// re-created under another nonce is decoded whole.
func TestGuardIncrementalRead(t *testing.T) {
	sh := newMemShared()
	g, other := NewGuard(10, nil, sh), NewGuard(10, nil, sh)
	require.NoError(t, g.Start())
	g.Labels("a", "t")
	other.Labels("b", "t")
	other.Labels("c", "t")
	sets := sh.sets
	require.Equal(t, [3]string{"c", "t", "Kept"}, labels(g, "c", "t"))
	require.Equal(t, sets, sh.sets, "found, not written again")
	gets := sh.gets
	require.Equal(t, [3]string{"b", "t", "Kept"}, labels(g, "b", "t"))
	require.Equal(t, gets, sh.gets, "learnt from the same read")
	require.Equal(t, 3, g.seenN)

	// Re-created (the creation window, see Guard): longer, other entries.
	require.NoError(t, sh.Set(encodeSet([2]string{"x", "tt"}, [2]string{"y", "tt"}, [2]string{"z", "tt"}), 0))
	require.Equal(t, [3]string{"z", "tt", "Kept"}, labels(g, "z", "tt"))
	require.Equal(t, 3, g.seenN)
	require.Len(t, sh.pairs(t), 3)
}

// The same pair admitted by another VM during our attempt: found on re-read,
// not written twice.
func TestGuardSamePairRacing(t *testing.T) {
	sh := newMemShared()
	g, other := NewGuard(5, nil, sh), NewGuard(5, nil, sh)
	require.NoError(t, g.Start())
	sh.beforeSet = func() { other.Labels("same", "t") }
	require.Equal(t, [3]string{"same", "t", "Kept"}, labels(g, "same", "t"))
	require.Equal(t, [][2]string{{"same", "t"}}, sh.pairs(t))
}

func TestGuardSharedDataUnusable(t *testing.T) {
	boom := errors.New("no shared data")
	t.Run("read fails: Other, and a later pair tries again", func(t *testing.T) {
		sh := newMemShared()
		g := NewGuard(5, nil, sh)
		require.NoError(t, g.Start())
		sh.getErr = boom
		require.Equal(t, [3]string{Other, Other, "Unavailable"}, labels(g, "a", "t"))
		sh.getErr = nil
		require.Equal(t, [3]string{"a", "t", "Kept"}, labels(g, "a", "t"))
	})
	t.Run("write fails", func(t *testing.T) {
		sh := newMemShared()
		g := NewGuard(5, nil, sh)
		require.NoError(t, g.Start())
		sh.setErr = boom
		require.Equal(t, [3]string{Other, Other, "Unavailable"}, labels(g, "a", "t"))
		require.Empty(t, sh.pairs(t))
	})
	t.Run("start fails: the set is created on the first miss", func(t *testing.T) {
		sh := newMemShared()
		sh.getErr = boom
		g := NewGuard(5, nil, sh)
		require.ErrorIs(t, g.Start(), boom)
		sh.getErr = nil
		require.Equal(t, [3]string{"a", "t", "Kept"}, labels(g, "a", "t"))
		require.Equal(t, [][2]string{{"a", "t"}}, sh.pairs(t))
	})
	t.Run("corrupt value: nothing new is admitted, known pairs keep their labels", func(t *testing.T) {
		sh := newMemShared()
		g := NewGuard(5, nil, sh)
		require.NoError(t, g.Start())
		g.Labels("a", "t")
		require.NoError(t, sh.Set(append(EmptyLabelSet(1), "\x09garbage;.;"...), 0))
		require.Equal(t, [3]string{Other, Other, "Unavailable"}, labels(g, "b", "t"))
		require.True(t, g.Corrupt())
		gets := sh.gets
		require.Equal(t, [3]string{Other, Other, "Unavailable"}, labels(g, "c", "t"))
		require.Equal(t, gets, sh.gets, "a corrupt set is not re-read")
		require.Equal(t, [3]string{"a", "t", "Kept"}, labels(g, "a", "t"))
		require.Equal(t, append(EmptyLabelSet(1), "\x09garbage;.;"...), sh.value, "never overwritten")
	})
	t.Run("start leaves an existing set alone", func(t *testing.T) {
		sh := newMemShared()
		require.NoError(t, sh.Set(encodeSet([2]string{"x", "y"}), 0))
		require.NoError(t, NewGuard(5, nil, sh).Start())
		require.Equal(t, [][2]string{{"x", "y"}}, sh.pairs(t))
	})
}

// Many VMs, random names, and at every write a random number of other VMs'
// admissions squeezed in between the read and the write: the pairs labelled
// anywhere are at most limit, and all of them are in the shared set.
func TestGuardBoundUnderInterleaving(t *testing.T) {
	for seed := int64(1); seed <= 200; seed++ {
		rng := rand.New(rand.NewSource(seed))
		limit := 1 + rng.Intn(12)
		sh := newMemShared()
		vms := make([]*Guard, 2+rng.Intn(6))
		for i := range vms {
			vms[i] = NewGuard(limit, nil, sh)
			require.NoError(t, vms[i].Start())
		}
		used := map[[2]string]bool{}
		busy := make([]bool, len(vms)) // a VM is one thread: never re-entered
		name := func() string { return fmt.Sprint("m", rng.Intn(3*limit)) }
		label := func(i int) {
			busy[i] = true
			m, tm, _ := vms[i].Labels(name(), "t")
			busy[i] = false
			used[[2]string{m, tm}] = true
		}
		sh.beforeSet = func() {
			for range rng.Intn(3) {
				if i := rng.Intn(len(vms)); !busy[i] {
					label(i)
				}
			}
		}
		for range 200 {
			label(rng.Intn(len(vms)))
		}
		delete(used, [2]string{Other, Other})
		inSet := map[[2]string]bool{}
		for _, p := range sh.pairs(t) {
			inSet[p] = true
		}
		require.LessOrEqual(t, len(inSet), limit, "seed %d", seed)
		require.Len(t, sh.pairs(t), len(inSet), "seed %d: a pair written twice", seed)
		for p := range used {
			require.True(t, inSet[p], "seed %d: %v labelled but not in the shared set", seed, p)
		}
	}
}

// BenchmarkGuardLabels: the per-request cost of the guard.
//   - hit: a pair this VM knows (every request of a normal workload);
//   - miss_full: a new pair once the set is full (an attack's steady state);
//   - miss_admit_N: a new pair admitted into a set of N pairs this VM has
//     read before (read, decode what is new, write back: at most limit times
//     per proxy).
func BenchmarkGuardLabels(b *testing.B) {
	b.Run("hit", func(b *testing.B) {
		g := NewGuard(100, nil, newMemShared())
		g.Labels("meta-llama/Llama-3.1-8B-Instruct", "sql-lora-1")
		b.ReportAllocs()
		for b.Loop() {
			g.Labels("meta-llama/Llama-3.1-8B-Instruct", "sql-lora-1")
		}
	})
	b.Run("miss_full", func(b *testing.B) {
		g := NewGuard(1, nil, newMemShared())
		g.Labels("first", "t")
		g.Labels("second", "t")
		b.ReportAllocs()
		for b.Loop() {
			if _, _, v := g.Labels("meta-llama/Llama-3.1-8B-Instruct-x", "sql-lora-1"); v != OverLimit {
				b.Fatal(v)
			}
		}
	})
	for _, n := range []int{0, 50, 99, 9999} {
		b.Run(fmt.Sprintf("miss_admit_%d", n), func(b *testing.B) {
			sh := newMemShared()
			g := NewGuard(n+1, nil, sh)
			if err := g.Start(); err != nil {
				b.Fatal(err)
			}
			for i := range n {
				g.Labels(fmt.Sprintf("meta-llama/Llama-3.1-8B-Instruct-%04d", i), "sql-lora-1")
			}
			base, model := sh.value, "meta-llama/Llama-3.1-8B-Instruct-new"
			key := string(AppendLabelPair(nil, model, "sql-lora-1"))
			seenLen, seenN := g.seenLen, g.seenN
			b.ReportAllocs()
			for b.Loop() {
				if _, _, v := g.Labels(model, "sql-lora-1"); v != Kept {
					b.Fatal(v)
				}
				// Undo, so that the next iteration misses again.
				sh.value, g.seenLen, g.seenN = base, seenLen, seenN
				delete(g.cache, key)
			}
		})
	}
}
