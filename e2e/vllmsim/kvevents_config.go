package vllmsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// KVEventsConfig is vLLM's --kv-events-config (vllm/config/kv_events.py):
// the JSON names and defaults are vLLM's. Only Encoding is the simulator's
// own: which of the two wire encodings vLLM has shipped to speak.
type KVEventsConfig struct {
	// EnableKVCacheEvents turns KV-cache events on.
	EnableKVCacheEvents bool `json:"enable_kv_cache_events"`
	// Publisher is "zmq" or "null" (default: "zmq" when events are on).
	Publisher string `json:"publisher"`
	// Endpoint is the PUB socket's address (default tcp://*:5557). As in
	// vLLM, the socket binds when the address has a wildcard ("*" or "::")
	// or is ipc:// or inproc://, and connects otherwise (a subscriber that
	// binds and lets publishers dial in). tcp://127.0.0.1:* binds a free
	// port on loopback.
	Endpoint string `json:"endpoint"`
	// ReplayEndpoint, when set, binds a ROUTER socket that answers replay
	// requests from the last BufferSteps batches.
	ReplayEndpoint *string `json:"replay_endpoint"`
	// BufferSteps is how many published batches replay can serve (default 10,000).
	BufferSteps int `json:"buffer_steps"`
	// HWM is the PUB socket's high-water mark in messages (default 100,000):
	// past it, messages to a subscriber that does not keep up are dropped.
	HWM int `json:"hwm"`
	// MaxQueueSize bounds the batches waiting for the publisher (default
	// 100,000); the engine waits when it is full, as vLLM's does.
	MaxQueueSize int `json:"max_queue_size"`
	// Topic is the first frame of every message (default "").
	Topic string `json:"topic"`

	// Encoding is the simulator's choice of vLLM's wire encoding of events:
	// EncodingMap (default) or EncodingArray.
	Encoding string `json:"-"`
}

// The KV event encodings vLLM has shipped. Batches are positional arrays
// [ts, events, data_parallel_rank] in both; events differ.
const (
	// EncodingMap: each event a map of field names with its type under
	// "type" (vLLM releases after mid-2026, vllm-project/vllm#42892).
	EncodingMap = "map"
	// EncodingArray: each event a positional array whose first element is
	// its type (vLLM 0.9 to 0.23): ["BlockStored", block_hashes,
	// parent_block_hash, token_ids, block_size, lora_id, medium, lora_name].
	EncodingArray = "array"
)

// ParseKVEventsConfig reads vLLM's --kv-events-config JSON. Unknown keys
// are an error, as in vLLM.
func ParseKVEventsConfig(s string) (KVEventsConfig, error) {
	var c KVEventsConfig
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return KVEventsConfig{}, fmt.Errorf("kv-events-config: %w", err)
	}
	if dec.More() {
		return KVEventsConfig{}, fmt.Errorf("kv-events-config: trailing data after the JSON object")
	}
	return c.withDefaults()
}

// enabled reports whether the server publishes events.
func (c KVEventsConfig) enabled() bool { return c.EnableKVCacheEvents && c.Publisher == "zmq" }

func (c KVEventsConfig) withDefaults() (KVEventsConfig, error) {
	if c.Publisher == "" {
		c.Publisher = "null"
		if c.EnableKVCacheEvents {
			c.Publisher = "zmq"
		}
	}
	if c.Endpoint == "" {
		c.Endpoint = "tcp://*:5557"
	}
	if c.BufferSteps == 0 {
		c.BufferSteps = 10_000
	}
	if c.HWM == 0 {
		c.HWM = 100_000
	}
	if c.MaxQueueSize == 0 {
		c.MaxQueueSize = 100_000
	}
	if c.Encoding == "" {
		c.Encoding = EncodingMap
	}
	switch {
	case c.Publisher != "zmq" && c.Publisher != "null":
		return c, fmt.Errorf("kv events publisher %q: want zmq or null", c.Publisher)
	case c.Encoding != EncodingMap && c.Encoding != EncodingArray:
		return c, fmt.Errorf("kv events encoding %q: want %s or %s", c.Encoding, EncodingMap, EncodingArray)
	case c.BufferSteps < 0 || c.HWM < 0 || c.MaxQueueSize < 0:
		return c, fmt.Errorf("kv events buffer_steps, hwm and max_queue_size must be positive")
	}
	if err := checkEndpoint(c.Endpoint); err != nil {
		return c, err
	}
	if c.ReplayEndpoint != nil {
		if err := checkEndpoint(*c.ReplayEndpoint); err != nil {
			return c, err
		}
	}
	return c, nil
}

func checkEndpoint(ep string) error {
	scheme, _, ok := strings.Cut(ep, "://")
	if !ok || (scheme != "tcp" && scheme != "ipc" && scheme != "inproc") {
		return fmt.Errorf("kv events endpoint %q: want tcp://, ipc:// or inproc://", ep)
	}
	return nil
}

// endpointBinds is vLLM's rule: bind when the address has a wildcard or is
// local (ipc, inproc); connect otherwise.
func endpointBinds(ep string) bool {
	return strings.Contains(ep, "*") || strings.Contains(ep, "::") ||
		strings.HasPrefix(ep, "ipc://") || strings.HasPrefix(ep, "inproc://")
}

// OffsetEndpointPort gives server i of a fleet its own endpoint, as vLLM
// offsets a data-parallel rank's: a numeric tcp port plus i, an inproc name
// with "_dp<i>"; a wildcard port and other schemes are left as they are.
func OffsetEndpointPort(ep string, i int) string {
	if i == 0 || ep == "" {
		return ep
	}
	if strings.HasPrefix(ep, "inproc://") {
		return fmt.Sprintf("%s_dp%d", ep, i)
	}
	if !strings.HasPrefix(ep, "tcp://") {
		return ep
	}
	k := strings.LastIndexByte(ep, ':')
	port, err := strconv.Atoi(ep[k+1:])
	if err != nil {
		return ep
	}
	return ep[:k+1] + strconv.Itoa(port+i)
}
