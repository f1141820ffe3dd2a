package vllmsim

import (
	"bytes"

	"github.com/vmihailenco/msgpack/v5"
)

// kvEventKind is which of vLLM's three KV-cache events one is.
type kvEventKind uint8

const (
	kvBlockStored kvEventKind = iota
	kvBlockRemoved
	kvAllBlocksCleared
)

// kvEvent is one change of the prefix cache (vllm/distributed/kv_events.py).
// A BlockStored covers consecutive full blocks of one request: their hashes,
// the hash of the block before the first (none for a prompt's first block)
// and their tokens, block_size per block.
type kvEvent struct {
	kind      kvEventKind
	hashes    []uint64
	parent    uint64
	hasParent bool
	tokens    []uint32
	adapter   int // index into Config.LoRAModules, -1 for the base model
}

// kvBatch is what one engine step changed, published as one message.
type kvBatch struct {
	ts     float64 // Unix seconds, as vLLM's time.time()
	events []kvEvent
}

// mediumGPU is vLLM's MEDIUM_GPU: every block here is on the GPU.
const mediumGPU = "GPU"

// kvEncoder encodes batches as vLLM's msgspec encoder does: a batch is the
// array [ts, events, data_parallel_rank]; each event is a tagged array or a
// tagged map (KVEventsConfig.Encoding). Block hashes are unsigned integers
// (vLLM's default, VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES).
type kvEncoder struct {
	encoding  string
	blockSize int
	loras     []LoRAModule
	buf       bytes.Buffer
	enc       *msgpack.Encoder
}

func newKVEncoder(encoding string, blockSize int, loras []LoRAModule) *kvEncoder {
	k := &kvEncoder{encoding: encoding, blockSize: blockSize, loras: loras}
	k.enc = msgpack.NewEncoder(&k.buf)
	return k
}

// encode returns the batch's payload; the slice is valid until the next call.
func (k *kvEncoder) encode(b kvBatch) []byte {
	k.buf.Reset()
	e := k.enc
	// Writes to a bytes.Buffer cannot fail.
	_ = e.EncodeArrayLen(3)
	_ = e.EncodeFloat64(b.ts)
	_ = e.EncodeArrayLen(len(b.events))
	for i := range b.events {
		if k.encoding == EncodingArray {
			k.eventArray(&b.events[i])
		} else {
			k.eventMap(&b.events[i])
		}
	}
	_ = e.EncodeInt(0) // data_parallel_rank: one engine per server
	return k.buf.Bytes()
}

func (k *kvEncoder) eventArray(ev *kvEvent) {
	e := k.enc
	switch ev.kind {
	case kvBlockStored:
		_ = e.EncodeArrayLen(8)
		_ = e.EncodeString("BlockStored")
		k.hashes(ev.hashes)
		k.parent(ev)
		k.tokens(ev.tokens)
		_ = e.EncodeInt(int64(k.blockSize))
		k.loraID(ev.adapter)
		_ = e.EncodeString(mediumGPU)
		k.loraName(ev.adapter)
	case kvBlockRemoved:
		_ = e.EncodeArrayLen(3)
		_ = e.EncodeString("BlockRemoved")
		k.hashes(ev.hashes)
		_ = e.EncodeString(mediumGPU)
	case kvAllBlocksCleared:
		_ = e.EncodeArrayLen(1)
		_ = e.EncodeString("AllBlocksCleared")
	}
}

// eventMap writes the fields vLLM's map encoding carries for a full-attention
// model (one KV cache group, index 0); the order is vLLM's declaration order.
func (k *kvEncoder) eventMap(ev *kvEvent) {
	e := k.enc
	switch ev.kind {
	case kvBlockStored:
		_ = e.EncodeMapLen(11)
		k.key("type")
		_ = e.EncodeString("BlockStored")
		k.key("block_hashes")
		k.hashes(ev.hashes)
		k.key("parent_block_hash")
		k.parent(ev)
		k.key("token_ids")
		k.tokens(ev.tokens)
		k.key("block_size")
		_ = e.EncodeInt(int64(k.blockSize))
		k.key("lora_id")
		k.loraID(ev.adapter)
		k.key("medium")
		_ = e.EncodeString(mediumGPU)
		k.key("lora_name")
		k.loraName(ev.adapter)
		k.key("extra_keys") // one per block; the simulator hashes no extra keys
		_ = e.EncodeArrayLen(len(ev.hashes))
		for range ev.hashes {
			_ = e.EncodeNil()
		}
		k.key("group_idx")
		_ = e.EncodeInt(0)
		k.key("kv_cache_spec_kind")
		_ = e.EncodeString("full_attention")
	case kvBlockRemoved:
		_ = e.EncodeMapLen(4)
		k.key("type")
		_ = e.EncodeString("BlockRemoved")
		k.key("block_hashes")
		k.hashes(ev.hashes)
		k.key("medium")
		_ = e.EncodeString(mediumGPU)
		k.key("group_idx")
		_ = e.EncodeInt(0)
	case kvAllBlocksCleared:
		_ = e.EncodeMapLen(1)
		k.key("type")
		_ = e.EncodeString("AllBlocksCleared")
	}
}

func (k *kvEncoder) key(s string) { _ = k.enc.EncodeString(s) }

func (k *kvEncoder) hashes(hs []uint64) {
	_ = k.enc.EncodeArrayLen(len(hs))
	for _, h := range hs {
		_ = k.enc.EncodeUint(h)
	}
}

func (k *kvEncoder) parent(ev *kvEvent) {
	if ev.hasParent {
		_ = k.enc.EncodeUint(ev.parent)
	} else {
		_ = k.enc.EncodeNil()
	}
}

func (k *kvEncoder) tokens(ids []uint32) {
	_ = k.enc.EncodeArrayLen(len(ids))
	for _, id := range ids {
		_ = k.enc.EncodeUint(uint64(id))
	}
}

// loraID is vLLM's lora_int_id: adapters numbered from 1 in the order
// they were declared.
func (k *kvEncoder) loraID(adapter int) {
	if adapter < 0 {
		_ = k.enc.EncodeNil()
		return
	}
	_ = k.enc.EncodeInt(int64(adapter + 1))
}

func (k *kvEncoder) loraName(adapter int) {
	if adapter < 0 {
		_ = k.enc.EncodeNil()
		return
	}
	_ = k.enc.EncodeString(k.loras[adapter].Name)
}
