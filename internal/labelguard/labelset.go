package labelguard

import (
	"encoding/binary"
	"errors"
)

// The admitted label pairs of the whole proxy live in one proxy-wasm shared
// data value, so that every VM (one per Envoy worker) admits from the same
// set. The encoding is append-only: admitting a pair appends its entry, so a
// compare-and-swap write is "what I read, plus one entry".
//
//	value = version nonce entry*
//	nonce = 8 bytes chosen by the VM that created the set
//	entry = len(model) model len(target) target   (each len one byte, 1..MaxValueLen)
//
// Values are TagValue outputs; the decoder rejects anything else, so a
// corrupt or foreign value can never put unsanitised bytes into a stat name.
// Its size is bounded: 9 + limit*(2+2*MaxValueLen) bytes, about 19 KiB at
// the default limit of 100.
//
// Since a set only grows by appending, a VM that has read a set once decodes
// only the entries after what it read; the nonce tells a re-created set (see
// Guard) from a grown one.

// LabelSetKey is the shared-data key of the admitted set. Envoy keeps shared
// data per vm_id (proxy-wasm-cpp-host src/shared_data.cc), so the bound holds
// for all the filter's VMs that share a vm_id. The version suffix changes
// with the encoding, so a filter upgrade never reads an older format.
const LabelSetKey = "meshllm.model_labels.v1"

const (
	labelSetVersion = 1
	labelSetHeader  = 1 + 8
)

// MaxLabelEntryLen is the largest encoded entry.
const MaxLabelEntryLen = 2 + 2*MaxValueLen

// ErrLabelSet says a shared value is not an encoded label set.
var ErrLabelSet = errors.New("labelguard: malformed shared label set")

// EmptyLabelSet is the encoding of a set with no pair.
func EmptyLabelSet(nonce uint64) []byte {
	return binary.LittleEndian.AppendUint64([]byte{labelSetVersion}, nonce)
}

// AppendLabelPair appends the entry of (model, target), which must be
// TagValue outputs, to dst. The entry doubles as the pair's key in a map.
func AppendLabelPair(dst []byte, model, target string) []byte {
	dst = append(dst, byte(len(model)))
	dst = append(dst, model...)
	dst = append(dst, byte(len(target)))
	return append(dst, target...)
}

// SplitLabelSet returns the nonce of an encoded set and its entries (still
// to be decoded with DecodeLabelEntries).
func SplitLabelSet(b []byte) (nonce uint64, entries []byte, err error) {
	if len(b) < labelSetHeader || b[0] != labelSetVersion {
		return 0, nil, ErrLabelSet
	}
	return binary.LittleEndian.Uint64(b[1:labelSetHeader]), b[labelSetHeader:], nil
}

// DecodeLabelEntries calls f with each entry in b, in order, until f returns
// false. entry is the pair's whole encoding (AppendLabelPair's output);
// model and target are its parts. The slices alias b. It returns the number
// of entries delivered, or ErrLabelSet if b is malformed (entries before the
// fault were delivered).
func DecodeLabelEntries(b []byte, f func(entry, model, target []byte) bool) (int, error) {
	n := 0
	for i := 0; i < len(b); {
		start := i
		model, next, ok := labelValue(b, i)
		if !ok {
			return n, ErrLabelSet
		}
		target, next, ok := labelValue(b, next)
		if !ok {
			return n, ErrLabelSet
		}
		i = next
		n++
		if !f(b[start:i], model, target) {
			break
		}
	}
	return n, nil
}

// DecodeLabelSet decodes a whole encoded set: SplitLabelSet, then
// DecodeLabelEntries.
func DecodeLabelSet(b []byte, f func(entry, model, target []byte) bool) (int, error) {
	_, entries, err := SplitLabelSet(b)
	if err != nil {
		return 0, err
	}
	return DecodeLabelEntries(entries, f)
}

// labelValue reads one length-prefixed value at b[i:].
func labelValue(b []byte, i int) (v []byte, next int, ok bool) {
	if i >= len(b) {
		return nil, 0, false
	}
	n := int(b[i])
	if n == 0 || n > MaxValueLen || len(b)-i-1 < n {
		return nil, 0, false
	}
	v = b[i+1 : i+1+n]
	for _, c := range v {
		if !safe(c) {
			return nil, 0, false
		}
	}
	return v, i + 1 + n, true
}
