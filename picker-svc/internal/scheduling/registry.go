package scheduling

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
)

// Factory builds a plugin from its parameters (nil: the defaults).
type Factory func(params json.RawMessage) (Plugin, error)

var registry = struct {
	sync.Mutex
	m map[string]Factory
}{m: map[string]Factory{}}

// Register makes a plugin buildable by name; each plugin file registers
// itself from init. Registering a name twice is a programming error.
func Register(name string, f Factory) {
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.m[name]; dup {
		panic("scheduling: plugin " + name + " registered twice")
	}
	registry.m[name] = f
}

// Registered lists the plugin names, sorted.
func Registered() []string {
	registry.Lock()
	defer registry.Unlock()
	out := make([]string, 0, len(registry.m))
	for n := range registry.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// build makes the plugin called name from params.
func build(name string, params json.RawMessage) (Plugin, error) {
	registry.Lock()
	f := registry.m[name]
	registry.Unlock()
	if f == nil {
		return nil, fmt.Errorf("unknown plugin %q (known: %v)", name, Registered())
	}
	p, err := f(params)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %w", name, err)
	}
	return p, nil
}

// decodeParams reads a plugin's parameters strictly into dst (already
// holding the defaults); nil or empty params keep the defaults.
func decodeParams(params json.RawMessage, dst any) error {
	if len(bytes.TrimSpace(params)) == 0 || string(bytes.TrimSpace(params)) == "null" {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(params))
	d.DisallowUnknownFields()
	if err := d.Decode(dst); err != nil {
		return fmt.Errorf("parameters %s: %w", params, err)
	}
	return nil
}

// noParams is the factory of a plugin without parameters.
func noParams(p Plugin) Factory {
	return func(params json.RawMessage) (Plugin, error) {
		if err := decodeParams(params, &struct{}{}); err != nil {
			return nil, err
		}
		return p, nil
	}
}
