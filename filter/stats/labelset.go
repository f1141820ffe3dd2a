package stats

import "errors"

// The admitted label pairs of the whole proxy live in one proxy-wasm shared
// data value, so that every VM (one per Envoy worker) admits from the same
// set. The encoding is append-only: admitting a pair appends its entry, so a
// compare-and-swap write is "what I read, plus one entry".
//
//	value = version entry*
//	entry = len(model) model len(target) target   (each len one byte, 1..MaxValueLen)
//
// Values are TagValue outputs; the decoder rejects anything else, so a
// corrupt or foreign value can never put unsanitised bytes into a stat name.
// Its size is bounded: 1 + limit*(2+2*MaxValueLen) bytes, about 19 KiB at
// the default limit of 100.

// LabelSetKey is the shared-data key of the admitted set. Envoy keeps shared
// data per vm_id (proxy-wasm-cpp-host src/shared_data.cc), so the bound holds
// for all the filter's VMs that share a vm_id. The version suffix changes
// with the encoding, so a filter upgrade never reads an older format.
const LabelSetKey = "meshllm.model_labels.v1"

const labelSetVersion = 1

// MaxLabelEntryLen is the largest encoded entry.
const MaxLabelEntryLen = 2 + 2*MaxValueLen

// ErrLabelSet says a shared value is not an encoded label set.
var ErrLabelSet = errors.New("stats: malformed shared label set")

// EmptyLabelSet is the encoding of a set with no pair.
func EmptyLabelSet() []byte { return []byte{labelSetVersion} }

// AppendLabelPair appends the entry of (model, target), which must be
// TagValue outputs, to dst. The entry doubles as the pair's key in a map.
func AppendLabelPair(dst []byte, model, target string) []byte {
	dst = append(dst, byte(len(model)))
	dst = append(dst, model...)
	dst = append(dst, byte(len(target)))
	return append(dst, target...)
}

// DecodeLabelSet calls f with each entry of an encoded set, in order, until
// f returns false. entry is the pair's whole encoding (AppendLabelPair's
// output); model and target are its parts. The slices alias b. It returns
// the number of entries delivered, or ErrLabelSet if b is malformed (entries
// before the fault were delivered).
func DecodeLabelSet(b []byte, f func(entry, model, target []byte) bool) (int, error) {
	if len(b) == 0 || b[0] != labelSetVersion {
		return 0, ErrLabelSet
	}
	n := 0
	for i := 1; i < len(b); {
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
