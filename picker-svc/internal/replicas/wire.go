package replicas

import (
	"errors"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"github.com/meshllm/meshllm/pickapi"
)

// Messages are msgpack (the codec memberlist itself uses), structs as
// arrays to keep field names off the wire, behind one byte naming the
// message kind and version: a replica drops kinds it does not know, so a
// rolling upgrade that adds one degrades to less sharing, not to errors.
const (
	kindBatch byte = 1 // wireBatch: picks and ends
	kindState byte = 2 // wireState: push-pull warm-up
)

// wireBatch is what a replica sends its peers every flush.
type wireBatch struct {
	_struct struct{} `codec:",toarray"` //nolint:unused // codec option
	From    string   // sender's node name
	Seq     uint64   // per sender, +1 a message: gaps are messages lost
	SentAt  int64    // sender's clock, Unix ns: the lag metric
	Picks   []wirePick
	Ends    []uint64
}

// wirePick is one pick (scheduling.PickRecord).
type wirePick struct {
	_struct  struct{} `codec:",toarray"` //nolint:unused // codec option
	ID       uint64
	Strategy uint8
	Endpoint string
	AgeUS    uint32 // microseconds from the pick to the send
	Prompt   uint32 // prompt tokens
	Blocks   uint16 // prefix blocks the picked pod likely held
	Hashes   []uint64
	// Added after the fields above (a replica of the release before
	// ignores them, and reads zeros where a peer omits them): what
	// predicted_ttft forecasts the request's output from.
	MaxTokens uint32
	Model     string
}

// wireState is a replica's whole shareable state, for a peer that joins.
type wireState struct {
	_struct struct{} `codec:",toarray"` //nolint:unused // codec option
	From    string
	Blocks  map[string][]uint64
	Holders []wireHolders
	Picks   []wirePick // recent picks, without hashes (the index has them)
	Ends    []uint64   // recent ends
}

type wireHolders struct {
	_struct struct{} `codec:",toarray"` //nolint:unused // codec option
	Hash    uint64
	Addrs   []string
}

// strategies are the wire codes of the profiles, by index: only ever
// append (a replica reads a code it does not know as DEFAULT).
var strategies = []pickapi.Strategy{pickapi.StrategyDefault, pickapi.StrategyPrefixCache, pickapi.StrategyLatency,
	pickapi.StrategyPrecisePrefixCache}

func strategyCode(s pickapi.Strategy) uint8 {
	for i, v := range strategies {
		if v == s {
			return uint8(i)
		}
	}
	return 0
}

func strategyOf(c uint8) pickapi.Strategy {
	if int(c) < len(strategies) {
		return strategies[c]
	}
	return pickapi.StrategyDefault
}

var handle = &codec.MsgpackHandle{}

// encode appends kind and v's encoding to dst.
func encode(dst []byte, kind byte, v any) ([]byte, error) {
	var b []byte
	if err := codec.NewEncoderBytes(&b, handle).Encode(v); err != nil {
		return dst, err
	}
	return append(append(dst, kind), b...), nil
}

var errKind = errors.New("unknown message kind")

// decode reads a message of kind into v.
func decode(b []byte, kind byte, v any) error {
	if len(b) == 0 || b[0] != kind {
		return errKind
	}
	return codec.NewDecoderBytes(b[1:], handle).Decode(v)
}

// pickSizeBound bounds a pick's encoded size (msgpack: at most 9 bytes an
// integer, a string's length plus 5), so packing needs no trial encoding.
func pickSizeBound(p *wirePick) int {
	return 1 + 9 + 2 + 5 + len(p.Endpoint) + 5 + 5 + 3 + 5 + 9*len(p.Hashes) + 5 + 5 + len(p.Model)
}

// maxWireModel bounds the model name a pick carries; a longer one (no
// configured model is) travels as "", and the peer forecasts the request
// as of an unknown model.
const maxWireModel = 256

func wireModel(m string) string {
	if len(m) > maxWireModel {
		return ""
	}
	return m
}

// batchOverhead bounds a batch's encoding without its picks and ends.
func batchOverhead(from string) int { return 1 + 1 + 5 + len(from) + 9 + 9 + 5 + 5 }
