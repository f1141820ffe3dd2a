package kvevents

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Kind is which of vLLM's KV-cache events an Event is.
type Kind uint8

// The event kinds (vllm/distributed/kv_events.py).
const (
	BlockStored Kind = iota + 1
	BlockRemoved
	AllBlocksCleared
)

// Event is one decoded KV-cache event. Slices point into the Decoder's
// buffers and the payload: valid until the next Decode.
type Event struct {
	Kind Kind
	// Hashes are the engine's block hashes; byte-string hashes are read as
	// vLLM reads them as integers: their last 8 bytes, big-endian.
	Hashes []uint64
	// Parent is the hash of the block before the first stored one (when
	// HasParent; none for a prompt's first block).
	Parent    uint64
	HasParent bool
	Tokens    []uint32 // BlockStored: the stored blocks' token ids
	BlockSize int
	// LoRAName (vLLM with lora_name) or LoRAID (older vLLM) name the adapter.
	LoRAName    string
	HasLoRAName bool
	LoRAID      int64
	HasLoRAID   bool
	Medium      string // "" when absent (vLLM before the medium field: GPU)
	GroupIdx    int64  // KV cache group; 0 when absent
	SpecKind    string // kv_cache_spec_kind; "" when absent
	// Extra is extra_keys: per block the raw msgpack of its entry, nil for
	// a nil entry; nil when the field is absent.
	Extra [][]byte
}

// Batch is one decoded KVEventBatch.
type Batch struct {
	TS     float64
	Events []Event
	// DPRank is data_parallel_rank, -1 when absent.
	DPRank int64
	// Unknown counts events of a type this decoder does not know (skipped).
	Unknown int
}

// Decoding limits: a payload over them is rejected, not half-read.
const (
	MaxPayloadBytes = 64 << 20
	maxDepth        = 32 // nesting of values skipped or kept raw
)

// ErrMalformed wraps every decoding failure.
var ErrMalformed = errors.New("kvevents: malformed batch")

// Decoder decodes KVEventBatch payloads in both encodings vLLM has shipped:
// events as tagged positional arrays ["BlockStored", ...] and as maps with
// the tag under "type"; the batch itself as [ts, events, rank] or, should a
// publisher send it so, as a map {ts, events, data_parallel_rank}. Fields
// are read by name or position, unknown fields and trailing positional
// fields are skipped, and any input gives a Batch or an error: never a
// panic, never an allocation sized by a length the input claims.
// A Decoder is not safe for concurrent use.
type Decoder struct {
	data   []byte
	r      bytes.Reader
	d      *msgpack.Decoder
	batch  Batch
	hashes []uint64
	tokens []uint32
	extra  [][]byte
	spans  []eventSpans
}

// eventSpans are an event's ranges in the shared buffers, turned into
// slices once the batch is read (the buffers may grow meanwhile).
type eventSpans struct {
	h0, h1, t0, t1, e0, e1 int
	extra                  bool
}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder {
	dec := &Decoder{}
	dec.d = msgpack.NewDecoder(&dec.r)
	return dec
}

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// Decode reads one payload. The Batch is valid until the next call.
func (dec *Decoder) Decode(payload []byte) (*Batch, error) {
	if len(payload) > MaxPayloadBytes {
		return nil, malformed("payload of %d bytes", len(payload))
	}
	dec.data = payload
	dec.r.Reset(payload)
	dec.d.Reset(&dec.r)
	dec.batch = Batch{Events: dec.batch.Events[:0], DPRank: -1}
	dec.hashes, dec.tokens, dec.extra, dec.spans = dec.hashes[:0], dec.tokens[:0], dec.extra[:0], dec.spans[:0]
	if err := dec.readBatch(); err != nil {
		return nil, err
	}
	if dec.r.Len() != 0 {
		return nil, malformed("%d bytes after the batch", dec.r.Len())
	}
	b := &dec.batch
	for i, s := range dec.spans {
		ev := &b.Events[i]
		ev.Hashes = dec.hashes[s.h0:s.h1:s.h1]
		ev.Tokens = dec.tokens[s.t0:s.t1:s.t1]
		if s.extra {
			ev.Extra = dec.extra[s.e0:s.e1:s.e1]
		}
	}
	return b, nil
}

func (dec *Decoder) peek() (byte, error) {
	c, err := dec.d.PeekCode()
	if err != nil {
		return 0, malformed("truncated")
	}
	return c, nil
}

// arrayLen reads an array header whose elements each take at least one
// byte: a length past the remaining input is malformed.
func (dec *Decoder) arrayLen() (int, error) {
	n, err := dec.d.DecodeArrayLen()
	if err != nil || n < 0 || n > dec.r.Len() {
		return 0, malformed("bad array")
	}
	return n, nil
}

func (dec *Decoder) mapLen() (int, error) {
	c, err := dec.peek()
	if err != nil {
		return 0, err
	}
	if !msgpcode.IsFixedMap(c) && c != msgpcode.Map16 && c != msgpcode.Map32 {
		return 0, malformed("want a map")
	}
	n, err := dec.d.DecodeMapLen()
	if err != nil || n < 0 || 2*n > dec.r.Len() {
		return 0, malformed("bad map")
	}
	return n, nil
}

// str returns a string or binary value as a slice of the payload.
func (dec *Decoder) str() ([]byte, error) {
	c, err := dec.peek()
	if err != nil {
		return nil, err
	}
	if !msgpcode.IsFixedString(c) && (c < msgpcode.Str8 || c > msgpcode.Str32) && (c < msgpcode.Bin8 || c > msgpcode.Bin32) {
		return nil, malformed("want a string")
	}
	n, err := dec.d.DecodeBytesLen()
	if err != nil || n < 0 || n > dec.r.Len() {
		return nil, malformed("bad string")
	}
	off := len(dec.data) - dec.r.Len()
	_, _ = dec.r.Seek(int64(n), io.SeekCurrent)
	return dec.data[off : off+n], nil
}

func (dec *Decoder) isNil() (bool, error) {
	c, err := dec.peek()
	if err != nil {
		return false, err
	}
	if c == msgpcode.Nil {
		_, _ = dec.r.ReadByte()
		return true, nil
	}
	return false, nil
}

func isInt(c byte) bool {
	return msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Uint64) || (c >= msgpcode.Int8 && c <= msgpcode.Int64)
}

func (dec *Decoder) int() (int64, error) {
	c, err := dec.peek()
	if err != nil {
		return 0, err
	}
	if !isInt(c) {
		return 0, malformed("want an integer")
	}
	n, err := dec.d.DecodeInt64()
	if err != nil {
		return 0, malformed("bad integer")
	}
	return n, nil
}

// optInt reads an integer or nil.
func (dec *Decoder) optInt() (int64, bool, error) {
	if null, err := dec.isNil(); err != nil || null {
		return 0, false, err
	}
	n, err := dec.int()
	return n, err == nil, err
}

func (dec *Decoder) optStr() (string, bool, error) {
	if null, err := dec.isNil(); err != nil || null {
		return "", false, err
	}
	s, err := dec.str()
	return string(s), err == nil, err
}

// hash reads a block hash: an integer (signed ones from old vLLM are read
// as their two's complement) or bytes, of which the last 8 count.
func (dec *Decoder) hash() (uint64, error) {
	c, err := dec.peek()
	if err != nil {
		return 0, err
	}
	if isInt(c) {
		n, err := dec.d.DecodeUint64()
		if err != nil {
			return 0, malformed("bad hash")
		}
		return n, nil
	}
	b, err := dec.str()
	if err != nil || len(b) == 0 {
		return 0, malformed("bad hash")
	}
	var buf [8]byte
	copy(buf[8-min(len(b), 8):], b[max(len(b)-8, 0):])
	return binary.BigEndian.Uint64(buf[:]), nil
}

func (dec *Decoder) hashList() (int, int, error) {
	n, err := dec.arrayLen()
	if err != nil {
		return 0, 0, err
	}
	h0 := len(dec.hashes)
	for range n {
		off := len(dec.data) - dec.r.Len()
		if v, size, ok := readUint(dec.data[off:]); ok { // the usual form, read directly
			dec.hashes = append(dec.hashes, v)
			_, _ = dec.r.Seek(int64(size), io.SeekCurrent)
			continue
		}
		h, err := dec.hash()
		if err != nil {
			return 0, 0, err
		}
		dec.hashes = append(dec.hashes, h)
	}
	return h0, len(dec.hashes), nil
}

// tokenList reads token ids, the bulk of a payload, straight from the
// bytes: a msgpack integer is a code byte and 0 to 8 big-endian bytes, and
// going through the library's reader interface for each cost 2.5x the
// whole ingest.
func (dec *Decoder) tokenList() (int, int, error) {
	n, err := dec.arrayLen()
	if err != nil {
		return 0, 0, err
	}
	t0 := len(dec.tokens)
	off := len(dec.data) - dec.r.Len()
	for range n {
		v, size, ok := readUint(dec.data[off:])
		if !ok || v > math.MaxUint32 {
			return 0, 0, malformed("bad token id")
		}
		dec.tokens = append(dec.tokens, uint32(v))
		off += size
	}
	_, _ = dec.r.Seek(int64(off), io.SeekStart)
	return t0, len(dec.tokens), nil
}

// readUint reads a non-negative msgpack integer at the start of b: its
// value, its size in bytes, and false when b does not start with one.
func readUint(b []byte) (uint64, int, bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	c := b[0]
	if c <= 0x7f { // positive fixint
		return uint64(c), 1, true
	}
	var v uint64
	var size int
	switch c {
	case msgpcode.Uint8, msgpcode.Int8:
		if len(b) < 2 {
			return 0, 0, false
		}
		v, size = uint64(b[1]), 1
	case msgpcode.Uint16, msgpcode.Int16:
		if len(b) < 3 {
			return 0, 0, false
		}
		v, size = uint64(binary.BigEndian.Uint16(b[1:])), 2
	case msgpcode.Uint32, msgpcode.Int32:
		if len(b) < 5 {
			return 0, 0, false
		}
		v, size = uint64(binary.BigEndian.Uint32(b[1:])), 4
	case msgpcode.Uint64, msgpcode.Int64:
		if len(b) < 9 {
			return 0, 0, false
		}
		v, size = binary.BigEndian.Uint64(b[1:]), 8
	default:
		return 0, 0, false
	}
	if c >= msgpcode.Int8 && v>>(8*size-1) != 0 {
		return 0, 0, false // a negative signed integer
	}
	return v, 1 + size, true
}

// skip passes over one value of any kind, nesting at most maxDepth deep.
func (dec *Decoder) skip(depth int) error {
	if depth > maxDepth {
		return malformed("nested too deep")
	}
	c, err := dec.peek()
	if err != nil {
		return err
	}
	var n int
	switch {
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		if n, err = dec.arrayLen(); err != nil {
			return err
		}
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		if n, err = dec.mapLen(); err != nil {
			return err
		}
		n *= 2
	default:
		return dec.skipScalar(c)
	}
	for range n {
		if err := dec.skip(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

// skipScalar passes over a value that is not an array or a map. It reads
// lengths itself: the library's Skip would first allocate whatever length
// a string, binary or extension header claims.
func (dec *Decoder) skipScalar(c byte) error {
	head, size := 1, 0 // header bytes, then a big-endian length of size bytes (or a fixed body)
	body := 0
	switch {
	case msgpcode.IsFixedNum(c), c == msgpcode.Nil, c == msgpcode.False, c == msgpcode.True:
	case msgpcode.IsFixedString(c):
		body = int(c & msgpcode.FixedStrMask)
	case c == msgpcode.Uint8 || c == msgpcode.Int8:
		body = 1
	case c == msgpcode.Uint16 || c == msgpcode.Int16:
		body = 2
	case c == msgpcode.Uint32 || c == msgpcode.Int32 || c == msgpcode.Float:
		body = 4
	case c == msgpcode.Uint64 || c == msgpcode.Int64 || c == msgpcode.Double:
		body = 8
	case c == msgpcode.FixExt1, c == msgpcode.FixExt2, c == msgpcode.FixExt4, c == msgpcode.FixExt8, c == msgpcode.FixExt16:
		body = 1 + 1<<(c-msgpcode.FixExt1) // type byte and 1..16 bytes
	case c == msgpcode.Str8 || c == msgpcode.Bin8:
		size = 1
	case c == msgpcode.Str16 || c == msgpcode.Bin16:
		size = 2
	case c == msgpcode.Str32 || c == msgpcode.Bin32:
		size = 4
	case c == msgpcode.Ext8:
		size, body = 1, 1
	case c == msgpcode.Ext16:
		size, body = 2, 1
	case c == msgpcode.Ext32:
		size, body = 4, 1
	default:
		return malformed("unknown code %#x", c)
	}
	off := len(dec.data) - dec.r.Len()
	if off+head+size > len(dec.data) {
		return malformed("truncated")
	}
	n := 0
	for _, b := range dec.data[off+head : off+head+size] {
		n = n<<8 | int(b)
	}
	total := head + size + body + n
	if total > dec.r.Len() {
		return malformed("truncated")
	}
	_, _ = dec.r.Seek(int64(total), io.SeekCurrent)
	return nil
}

// raw passes over one value and returns its bytes.
func (dec *Decoder) raw() ([]byte, error) {
	start := len(dec.data) - dec.r.Len()
	if err := dec.skip(0); err != nil {
		return nil, err
	}
	return dec.data[start : len(dec.data)-dec.r.Len()], nil
}

func (dec *Decoder) readBatch() error {
	c, err := dec.peek()
	if err != nil {
		return err
	}
	if msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32 {
		return dec.readBatchMap()
	}
	n, err := dec.arrayLen()
	if err != nil {
		return err
	}
	if n < 2 {
		return malformed("batch of %d fields", n)
	}
	if err := dec.ts(); err != nil {
		return err
	}
	if err := dec.events(); err != nil {
		return err
	}
	for i := 2; i < n; i++ {
		if i == 2 {
			if err := dec.rank(); err != nil {
				return err
			}
			continue
		}
		if err := dec.skip(0); err != nil {
			return err
		}
	}
	return nil
}

func (dec *Decoder) readBatchMap() error {
	n, err := dec.mapLen()
	if err != nil {
		return err
	}
	seen := false
	for range n {
		k, err := dec.str()
		if err != nil {
			return err
		}
		switch string(k) {
		case "ts":
			err = dec.ts()
		case "events":
			err, seen = dec.events(), true
		case "data_parallel_rank":
			err = dec.rank()
		default:
			err = dec.skip(0)
		}
		if err != nil {
			return err
		}
	}
	if !seen {
		return malformed("batch without events")
	}
	return nil
}

func (dec *Decoder) ts() error {
	c, err := dec.peek()
	if err != nil {
		return err
	}
	if c != msgpcode.Double && c != msgpcode.Float && !isInt(c) {
		return malformed("ts not a number")
	}
	if dec.batch.TS, err = dec.d.DecodeFloat64(); err != nil {
		return malformed("bad ts")
	}
	return nil
}

func (dec *Decoder) rank() error {
	r, ok, err := dec.optInt()
	if err != nil {
		return err
	}
	if ok {
		dec.batch.DPRank = r
	}
	return nil
}

func (dec *Decoder) events() error {
	n, err := dec.arrayLen()
	if err != nil {
		return err
	}
	for range n {
		var ev Event
		var sp eventSpans
		known, err := dec.event(&ev, &sp)
		if err != nil {
			return err
		}
		if !known {
			dec.batch.Unknown++
			continue
		}
		dec.batch.Events = append(dec.batch.Events, ev)
		dec.spans = append(dec.spans, sp)
	}
	return nil
}

func kindOf(tag []byte) Kind {
	switch string(tag) {
	case "BlockStored":
		return BlockStored
	case "BlockRemoved":
		return BlockRemoved
	case "AllBlocksCleared":
		return AllBlocksCleared
	}
	return 0
}

// The positional fields of each event, after the tag, in vLLM's order.
var positional = map[Kind][]string{
	BlockStored: {"block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium",
		"lora_name", "extra_keys", "group_idx", "kv_cache_spec_kind"},
	BlockRemoved:     {"block_hashes", "medium", "group_idx"},
	AllBlocksCleared: {},
}

// event reads one event; known is false for an unknown type (skipped).
func (dec *Decoder) event(ev *Event, sp *eventSpans) (bool, error) {
	sp.h0, sp.h1, sp.t0, sp.t1 = len(dec.hashes), len(dec.hashes), len(dec.tokens), len(dec.tokens)
	c, err := dec.peek()
	if err != nil {
		return false, err
	}
	if msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32 {
		return dec.eventMap(ev, sp)
	}
	n, err := dec.arrayLen()
	if err != nil {
		return false, err
	}
	if n == 0 {
		return false, malformed("event without a type")
	}
	tag, err := dec.str()
	if err != nil {
		return false, err
	}
	ev.Kind = kindOf(tag)
	names := positional[ev.Kind]
	for i := 1; i < n; i++ {
		if ev.Kind == 0 || i-1 >= len(names) {
			err = dec.skip(0)
		} else {
			err = dec.field(names[i-1], ev, sp)
		}
		if err != nil {
			return false, err
		}
	}
	return ev.Kind != 0, dec.check(ev, sp)
}

func (dec *Decoder) eventMap(ev *Event, sp *eventSpans) (bool, error) {
	n, err := dec.mapLen()
	if err != nil {
		return false, err
	}
	// The tag may come anywhere: read every field, decide at the end.
	for range n {
		k, err := dec.str()
		if err != nil {
			return false, err
		}
		if string(k) == "type" {
			tag, err := dec.str()
			if err != nil {
				return false, err
			}
			ev.Kind = kindOf(tag)
			continue
		}
		if err := dec.field(string(k), ev, sp); err != nil {
			return false, err
		}
	}
	if ev.Kind == 0 {
		return false, nil
	}
	return true, dec.check(ev, sp)
}

// field reads one named field into ev; unknown names are skipped.
func (dec *Decoder) field(name string, ev *Event, sp *eventSpans) error {
	var err error
	switch name {
	case "block_hashes":
		sp.h0, sp.h1, err = dec.hashList()
	case "parent_block_hash":
		var null bool
		if null, err = dec.isNil(); err == nil && !null {
			ev.Parent, err = dec.hash()
			ev.HasParent = err == nil
		}
	case "token_ids":
		sp.t0, sp.t1, err = dec.tokenList()
	case "block_size":
		var bs int64
		if bs, err = dec.int(); err == nil {
			if bs < 1 || bs > 1<<16 {
				return malformed("block_size %d", bs)
			}
			ev.BlockSize = int(bs)
		}
	case "lora_id":
		ev.LoRAID, ev.HasLoRAID, err = dec.optInt()
	case "lora_name":
		ev.LoRAName, ev.HasLoRAName, err = dec.optStr()
	case "medium":
		ev.Medium, _, err = dec.optStr()
	case "group_idx":
		ev.GroupIdx, _, err = dec.optInt()
	case "kv_cache_spec_kind":
		ev.SpecKind, _, err = dec.optStr()
	case "extra_keys":
		err = dec.extraKeys(sp)
	default:
		err = dec.skip(0)
	}
	return err
}

func (dec *Decoder) extraKeys(sp *eventSpans) error {
	if null, err := dec.isNil(); err != nil || null {
		return err
	}
	n, err := dec.arrayLen()
	if err != nil {
		return err
	}
	sp.e0, sp.extra = len(dec.extra), true
	for range n {
		var raw []byte
		null, err := dec.isNil()
		if err != nil {
			return err
		}
		if !null {
			if raw, err = dec.raw(); err != nil {
				return err
			}
		}
		dec.extra = append(dec.extra, raw)
	}
	sp.e1 = len(dec.extra)
	return nil
}

// check rejects a BlockStored whose fields disagree.
func (dec *Decoder) check(ev *Event, sp *eventSpans) error {
	if ev.Kind != BlockStored {
		return nil
	}
	blocks, tokens := sp.h1-sp.h0, sp.t1-sp.t0
	switch {
	case ev.BlockSize == 0:
		return malformed("BlockStored without block_size")
	case tokens != blocks*ev.BlockSize:
		return malformed("BlockStored: %d tokens for %d blocks of %d", tokens, blocks, ev.BlockSize)
	case sp.extra && sp.e1-sp.e0 != blocks:
		return malformed("BlockStored: %d extra_keys for %d blocks", sp.e1-sp.e0, blocks)
	}
	return nil
}
