package kvevents

// table is an open-addressing hash set of slab indexes (stored as index+1,
// 0 meaning empty) with linear probing and backward-shift deletion, so it
// costs 4 bytes a slot and no tombstones; the values it is looked up by
// live in the slab. It grows at 3/4 full.
type table[K any, O tableOps[K]] struct {
	slots []uint32
	n     int
	shift uint8
	ops   O
}

// tableOps tells a table how to hash a key and a stored entry, and whether
// an entry matches a key.
type tableOps[K any] interface {
	hashKey(k K) uint64
	hashEntry(v uint32) uint64
	match(v uint32, k K) bool
}

const minTableBits = 10

func newTable[K any, O tableOps[K]](ops O) table[K, O] {
	return table[K, O]{slots: make([]uint32, 1<<minTableBits), shift: 64 - minTableBits, ops: ops}
}

// home is a hash's first slot: Fibonacci hashing keeps the well-mixed high bits.
func (t *table[K, O]) home(h uint64) uint64 { return (h * 0x9e3779b97f4a7c15) >> t.shift }

func (t *table[K, O]) mask() uint64 { return uint64(len(t.slots) - 1) }

func (t *table[K, O]) find(k K) (uint32, bool) {
	m := t.mask()
	for i := t.home(t.ops.hashKey(k)); ; i = (i + 1) & m {
		v := t.slots[i]
		if v == 0 {
			return 0, false
		}
		if t.ops.match(v-1, k) {
			return v - 1, true
		}
	}
}

// insert adds entry v, whose key the table must not hold yet.
func (t *table[K, O]) insert(h uint64, v uint32) {
	if 4*(t.n+1) > 3*len(t.slots) {
		t.grow()
	}
	m := t.mask()
	i := t.home(h)
	for t.slots[i] != 0 {
		i = (i + 1) & m
	}
	t.slots[i] = v + 1
	t.n++
}

func (t *table[K, O]) grow() {
	old := t.slots
	t.slots = make([]uint32, 2*len(old))
	t.shift--
	m := t.mask()
	for _, v := range old {
		if v == 0 {
			continue
		}
		i := t.home(t.ops.hashEntry(v - 1))
		for t.slots[i] != 0 {
			i = (i + 1) & m
		}
		t.slots[i] = v
	}
}

// remove deletes the entry matching k and reports whether there was one.
func (t *table[K, O]) remove(k K) bool {
	m := t.mask()
	i := t.home(t.ops.hashKey(k))
	for {
		v := t.slots[i]
		if v == 0 {
			return false
		}
		if t.ops.match(v-1, k) {
			break
		}
		i = (i + 1) & m
	}
	// Backward shift: move later entries of the run into the hole when
	// their home is not between the hole and them.
	for j := (i + 1) & m; ; j = (j + 1) & m {
		v := t.slots[j]
		if v == 0 {
			break
		}
		h := t.home(t.ops.hashEntry(v - 1))
		if (j-h)&m >= (j-i)&m {
			t.slots[i] = v
			i = j
		}
	}
	t.slots[i] = 0
	t.n--
	return true
}

// bytes is the table's memory.
func (t *table[K, O]) bytes() int { return 4 * len(t.slots) }
