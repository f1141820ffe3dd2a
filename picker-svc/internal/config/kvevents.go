package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"sigs.k8s.io/yaml"
)

// KVEvents is how the picker follows the engines' KV-cache events, for
// pools whose strategy is PRECISE_PREFIX_CACHE: vLLM publishes them with
// --kv-events-config '{"enable_kv_cache_events":true,"publisher":"zmq",
// "endpoint":"tcp://*:5557","topic":"kv-events"}'.
type KVEvents struct {
	// Port of each engine's publisher; the picker dials the endpoint's
	// host there (default 5557, vLLM's).
	Port int `json:"port"`
	// ReplayPort of each engine's replay socket (vLLM's replay_endpoint),
	// asked for missed batches after a sequence gap (0: none, the pod
	// falls back until it has caught up).
	ReplayPort int `json:"replayPort"`
	// Topic subscribed to: a prefix of the publishers' topic ("": all).
	Topic string `json:"topic"`
	// Listen binds a socket publishers dial into (tcp://*:5557) instead of
	// dialling them; their topic must then be kv@<pod address>@<model>.
	Listen string `json:"listen"`
	// TokenizerTimeout bounds one call to an engine's render endpoint
	// for a prompt's token ids (default 200ms).
	TokenizerTimeout Duration `json:"tokenizerTimeout"`
	// TokenizerCache is how many prompts' token ids are kept (default 4096).
	TokenizerCache int `json:"tokenizerCache"`
	// Pools set Port, ReplayPort and Topic for one pool's endpoints, by
	// InferencePool name (dialling mode; in bind mode the one socket
	// subscribes to Topic).
	Pools map[string]KVEventsPool `json:"pools"`
}

// KVEventsPool is one pool's publisher settings; an unset field keeps the
// picker-wide one.
type KVEventsPool struct {
	Port       int     `json:"port"`       // 0: kvEvents.port
	ReplayPort *int    `json:"replayPort"` // unset: kvEvents.replayPort; 0: none
	Topic      *string `json:"topic"`      // unset: kvEvents.topic
}

// KVPublisher is where a pool's engines publish their KV events.
type KVPublisher struct {
	Port, ReplayPort int
	Topic            string
}

// Publishers resolves the settings: the picker-wide ones, and each
// configured pool's.
func (k *KVEvents) Publishers() (def KVPublisher, pools map[string]KVPublisher) {
	def = KVPublisher{Port: k.Port, ReplayPort: k.ReplayPort, Topic: k.Topic}
	pools = make(map[string]KVPublisher, len(k.Pools))
	for name, p := range k.Pools {
		r := def
		if p.Port != 0 {
			r.Port = p.Port
		}
		if p.ReplayPort != nil {
			r.ReplayPort = *p.ReplayPort
		}
		if p.Topic != nil {
			r.Topic = *p.Topic
		}
		pools[name] = r
	}
	return def, pools
}

func kvEventsDefaults(k *KVEvents) {
	k.Port = 5557
	k.TokenizerTimeout.Duration = 200 * time.Millisecond
	k.TokenizerCache = 4096
}

// kvEventsFlags registers the flags; apply sets what was given (env
// PICKER_KV_EVENTS_*, then flags).
func kvEventsFlags(fs *flag.FlagSet) (apply func(c *Config, set map[string]bool, getenv func(string) string) error) {
	port := fs.Int("kv-events-port", 0, "PRECISE_PREFIX_CACHE pools: port of each engine's KV-event publisher (env PICKER_KV_EVENTS_PORT; default 5557)")
	topic := fs.String("kv-events-topic", "", "PRECISE_PREFIX_CACHE pools: KV-event topic prefix to subscribe to (env PICKER_KV_EVENTS_TOPIC; default all)")
	listen := fs.String("kv-events-listen", "", "bind mode: bind this address (tcp://*:5557) for publishers that dial in, instead of dialling each engine (env PICKER_KV_EVENTS_LISTEN)")
	tmo := fs.Duration("tokenizer-timeout", 0, "PRECISE_PREFIX_CACHE pools: timeout of one call to an engine's render endpoint for token ids (env PICKER_TOKENIZER_TIMEOUT; default 200ms)")
	return func(c *Config, set map[string]bool, getenv func(string) string) error {
		k := &c.KVEvents
		if set["kv-events-port"] {
			k.Port = *port
		} else if v := getenv("PICKER_KV_EVENTS_PORT"); v != "" {
			p, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("PICKER_KV_EVENTS_PORT: %w", err)
			}
			k.Port = p
		}
		if set["kv-events-topic"] {
			k.Topic = *topic
		} else if v := getenv("PICKER_KV_EVENTS_TOPIC"); v != "" {
			k.Topic = v
		}
		if set["kv-events-listen"] {
			k.Listen = *listen
		} else if v := getenv("PICKER_KV_EVENTS_LISTEN"); v != "" {
			k.Listen = v
		}
		if set["tokenizer-timeout"] {
			k.TokenizerTimeout.Duration = *tmo
		} else if v := getenv("PICKER_TOKENIZER_TIMEOUT"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("PICKER_TOKENIZER_TIMEOUT: %w", err)
			}
			k.TokenizerTimeout.Duration = d
		}
		return nil
	}
}

func (k *KVEvents) validate() error {
	var errs []error
	if k.Port < 1 || k.Port > 65535 {
		errs = append(errs, fmt.Errorf("kvEvents.port %d: want 1..65535", k.Port))
	}
	if k.ReplayPort < 0 || k.ReplayPort > 65535 {
		errs = append(errs, fmt.Errorf("kvEvents.replayPort %d: want 0 (none) or 1..65535", k.ReplayPort))
	}
	if k.TokenizerTimeout.Duration <= 0 {
		errs = append(errs, errors.New("kvEvents.tokenizerTimeout must be positive"))
	}
	if k.TokenizerCache < 1 || k.TokenizerCache > 1<<20 {
		errs = append(errs, fmt.Errorf("kvEvents.tokenizerCache %d: want 1..1048576", k.TokenizerCache))
	}
	for _, name := range slices.Sorted(maps.Keys(k.Pools)) {
		p := k.Pools[name]
		if name == "" {
			errs = append(errs, errors.New("kvEvents.pools: a pool without a name"))
		}
		if p.Port < 0 || p.Port > 65535 {
			errs = append(errs, fmt.Errorf("kvEvents.pools.%s.port %d: want 1..65535 (0: kvEvents.port)", name, p.Port))
		}
		if r := p.ReplayPort; r != nil && (*r < 0 || *r > 65535) {
			errs = append(errs, fmt.Errorf("kvEvents.pools.%s.replayPort %d: want 0 (none) or 1..65535", name, *r))
		}
	}
	return errors.Join(errs...)
}

// EPPKVEvents is what an EndpointPickerConfig's precise prefix-cache
// plugin says about KV events (nil fields: unsaid). An upstream endpoint
// picker serves one pool, so they are picker-wide settings here.
type EPPKVEvents struct {
	Port   *int    // kvEventsConfig.podDiscoveryConfig.socketPort
	Topic  *string // kvEventsConfig.topicFilter
	Listen string  // kvEventsConfig.zmqEndpoint, without discoverPods
}

// applyEPP sets from e what the config file's kvEvents keys (fileKeys)
// left unset; flags and env then override as always.
func (k *KVEvents) applyEPP(e EPPKVEvents, fileKeys map[string]bool) {
	if e.Port != nil && !fileKeys["port"] {
		k.Port = *e.Port
	}
	if e.Topic != nil && !fileKeys["topic"] {
		k.Topic = *e.Topic
	}
	if e.Listen != "" && !fileKeys["listen"] {
		k.Listen = e.Listen
	}
}

// kvEventsKeys lists the kvEvents keys a config file sets.
func kvEventsKeys(file []byte) map[string]bool {
	var probe struct {
		KVEvents map[string]json.RawMessage `json:"kvEvents"`
	}
	_ = yaml.Unmarshal(file, &probe) // the strict read has already accepted the file
	out := map[string]bool{}
	for k := range probe.KVEvents {
		out[k] = true
	}
	return out
}
