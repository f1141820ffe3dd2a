package pickapi

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/internal/jsonenc"
	"github.com/meshllm/meshllm/internal/jsonscan"
)

// A pool's resolution table: what the picker does with a request's model
// before it schedules it (InferenceModelRewrite rules and InferenceModels:
// a model name to weighted target models), so that a filter can do the same
// when no pick answers (the picker slow, down or restarting).
//
// A pick answer names the version of its pool's table (PickResponse.
// Resolution); a filter that holds another version fetches the table:
//
//	GET /v1/resolution?pool=vllm-llama2-7b-pool
//	{"pool":"vllm-llama2-7b-pool","version":"5c0e1b9d7a3f2e41",
//	 "models":[{"model":"tweet-summary","targets":[{"name":"tweet-summary-1","weight":50},
//	                                              {"name":"tweet-summary-2","weight":50}]}],
//	 "default":[{"name":"base","weight":1}]}
//
// "pool" is the pool the table was asked for ("" is the table of a filter
// that names no pool: the models the picker resolves to one pool). A model
// "models" does not name takes "default" (a generic rewrite rule) if there
// is one, else stays as it is.

// ResolutionPath is where picker-svc serves resolution tables (GET, query
// parameter "pool").
const ResolutionPath = "/v1/resolution"

// Limits of a resolution table, so that a filter's memory stays bounded. A
// picker does not announce a table past them; a filter refuses one.
const (
	MaxResolutionModels  = 512
	MaxResolutionTargets = 64 // an InferenceModel's most
	MaxResolutionSize    = 64 << 10
	MaxVersionLen        = 64
	// MaxTargetWeight is an InferenceModel's largest target weight.
	MaxTargetWeight = 1_000_000
	// root > models > model > targets > target
	maxResolutionDepth = 5
)

// Target is one weighted target model.
type Target struct {
	Name   string
	Weight int32
}

// Resolution is one pool's resolution table.
type Resolution struct {
	Pool    string
	Version string
	// Models maps a model name to its weighted targets.
	Models map[string][]Target
	// Default serves every model Models does not name; nil: none (the
	// model stays as it is).
	Default []Target
}

// ChooseTarget picks one of targets with probability proportional to its
// weight: draw(n) must return a uniform integer in [0, n). One target is
// chosen without a draw; weights that sum to 0 choose the first (what the
// picker has always done with an InferenceModel whose weights are all 0).
func ChooseTarget(targets []Target, draw func(n int64) int64) string {
	switch len(targets) {
	case 0:
		return ""
	case 1:
		return targets[0].Name
	}
	var total int64
	for _, t := range targets {
		total += int64(t.Weight)
	}
	if total <= 0 {
		return targets[0].Name
	}
	x := draw(total)
	for _, t := range targets {
		x -= int64(t.Weight)
		if x < 0 {
			return t.Name
		}
	}
	return targets[len(targets)-1].Name
}

// Target resolves model: a weighted draw among its targets, or among the
// default targets; ok is false when the table leaves model as it is.
func (r *Resolution) Target(model string, draw func(n int64) int64) (target string, ok bool) {
	if ts, found := r.Models[model]; found {
		return ChooseTarget(ts, draw), true
	}
	if r.Default != nil {
		return ChooseTarget(r.Default, draw), true
	}
	return "", false
}

// AppendJSON appends the table's JSON encoding to dst, models sorted by
// name, so that equal tables encode to equal bytes.
func (r *Resolution) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"pool":`...)
	dst = jsonenc.AppendString(dst, r.Pool)
	dst = append(dst, `,"version":`...)
	dst = jsonenc.AppendString(dst, r.Version)
	dst = append(dst, `,"models":[`...)
	names := make([]string, 0, len(r.Models))
	for m := range r.Models {
		names = append(names, m)
	}
	slices.Sort(names)
	for i, m := range names {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"model":`...)
		dst = jsonenc.AppendString(dst, m)
		dst = append(dst, `,"targets":`...)
		dst = appendTargets(dst, r.Models[m])
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	if r.Default != nil {
		dst = append(dst, `,"default":`...)
		dst = appendTargets(dst, r.Default)
	}
	return append(dst, '}')
}

func appendTargets(dst []byte, ts []Target) []byte {
	dst = append(dst, '[')
	for i, t := range ts {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = jsonenc.AppendString(dst, t.Name)
		dst = append(dst, `,"weight":`...)
		dst = strconv.AppendInt(dst, int64(t.Weight), 10)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// Seal sets Version to a digest of the table's content: pickers that hold
// the same objects announce the same version, so a filter behind several
// replicas fetches a table once, not once per replica.
func (r *Resolution) Seal() {
	r.Version = ""
	h := fnv.New64a()
	_, _ = h.Write(r.AppendJSON(nil))
	r.Version = fmt.Sprintf("%016x", h.Sum64())
}

// CheckLimits reports whether the table is within the limits a filter
// accepts.
func (r *Resolution) CheckLimits() error {
	if len(r.Models) > MaxResolutionModels {
		return fmt.Errorf("resolution table of %d models exceeds %d", len(r.Models), MaxResolutionModels)
	}
	if n := len(r.AppendJSON(nil)); n > MaxResolutionSize {
		return fmt.Errorf("resolution table of %d bytes exceeds %d", n, MaxResolutionSize)
	}
	for m, ts := range r.Models {
		if len(ts) > MaxResolutionTargets {
			return fmt.Errorf("model %q has %d targets, more than %d", m, len(ts), MaxResolutionTargets)
		}
	}
	if len(r.Default) > MaxResolutionTargets {
		return fmt.Errorf("the default rule has %d targets, more than %d", len(r.Default), MaxResolutionTargets)
	}
	return nil
}

// ValidVersion reports whether v can be a table's version: 1 to
// MaxVersionLen bytes of [0-9A-Za-z._-].
func ValidVersion(v string) bool {
	if v == "" || len(v) > MaxVersionLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// ParseResolution decodes and validates a resolution table: at most
// MaxResolutionSize bytes, MaxResolutionModels models and
// MaxResolutionTargets targets a list, names of 1 to MaxNameLen bytes of
// printable UTF-8, each listed once, weights in 0..MaxTargetWeight. Fields
// it does not know are ignored (a newer picker may add some); anything else
// out of shape refuses the whole table.
func ParseResolution(b []byte) (Resolution, error) {
	var r Resolution
	if len(b) > MaxResolutionSize {
		return r, fmt.Errorf("resolution table of %d bytes exceeds %d", len(b), MaxResolutionSize)
	}
	if err := jsonscan.Check(b, maxResolutionDepth); err != nil {
		return r, fmt.Errorf("resolution table: %w", err)
	}
	root := gjson.ParseBytes(b)
	if !root.IsObject() {
		return r, errors.New("resolution table must be a JSON object")
	}
	var err error
	seen := map[string]bool{}
	root.ForEach(func(k, v gjson.Result) bool {
		if seen[k.Str] {
			err = fmt.Errorf("resolution table: %q is given twice", k.Str)
			return false
		}
		seen[k.Str] = true
		switch k.Str {
		case "pool":
			if v.Type == gjson.String && v.Str == "" {
				break // a filter that names no pool
			}
			r.Pool, err = nameValue("pool", v)
		case "version":
			if v.Type != gjson.String || !ValidVersion(v.Str) {
				err = fmt.Errorf("resolution table: version %s is not 1-%d bytes of [0-9A-Za-z._-]", clipRaw(v.Raw), MaxVersionLen)
			}
			r.Version = v.Str
		case "models":
			r.Models, err = modelsField(v)
		case "default":
			r.Default, err = targetsField("default", v)
		}
		return err == nil
	})
	if err != nil {
		return Resolution{}, err
	}
	if r.Version == "" {
		return Resolution{}, errors.New("resolution table: no version")
	}
	if r.Models == nil {
		r.Models = map[string][]Target{}
	}
	return r, nil
}

func modelsField(v gjson.Result) (map[string][]Target, error) {
	if !v.IsArray() {
		return nil, errors.New("resolution table: models must be an array")
	}
	out := map[string][]Target{}
	var err error
	v.ForEach(func(_, e gjson.Result) bool {
		if len(out) == MaxResolutionModels {
			err = fmt.Errorf("resolution table: more than %d models", MaxResolutionModels)
			return false
		}
		if !e.IsObject() {
			err = errors.New("resolution table: a model entry must be an object")
			return false
		}
		var name string
		var targets []Target
		seen := 0
		e.ForEach(func(k, f gjson.Result) bool {
			switch k.Str {
			case "model":
				seen |= 1
				name, err = nameValue("model", f)
			case "targets":
				seen |= 2
				targets, err = targetsField("targets", f)
			}
			return err == nil
		})
		switch {
		case err != nil:
		case seen != 3:
			err = errors.New("resolution table: a model entry needs model and targets")
		case out[name] != nil:
			err = fmt.Errorf("resolution table: model %q is listed twice", name)
		default:
			out[name] = targets
		}
		return err == nil
	})
	return out, err
}

func targetsField(field string, v gjson.Result) ([]Target, error) {
	if !v.IsArray() {
		return nil, fmt.Errorf("resolution table: %s must be an array", field)
	}
	out := []Target{}
	var err error
	v.ForEach(func(_, e gjson.Result) bool {
		if len(out) == MaxResolutionTargets {
			err = fmt.Errorf("resolution table: %s holds more than %d targets", field, MaxResolutionTargets)
			return false
		}
		if !e.IsObject() {
			err = fmt.Errorf("resolution table: %s holds %s, want objects", field, clipRaw(e.Raw))
			return false
		}
		t, seen := Target{}, 0
		e.ForEach(func(k, f gjson.Result) bool {
			switch k.Str {
			case "name":
				seen |= 1
				t.Name, err = nameValue("target name", f)
			case "weight":
				seen |= 2
				n, perr := strconv.ParseInt(f.Raw, 10, 32)
				if f.Type != gjson.Number || perr != nil || n < 0 || n > MaxTargetWeight {
					err = fmt.Errorf("resolution table: weight %s is not an integer in 0..%d", clipRaw(f.Raw), MaxTargetWeight)
				}
				t.Weight = int32(n)
			}
			return err == nil
		})
		if err == nil && seen != 3 {
			err = fmt.Errorf("resolution table: a target of %s needs name and weight", field)
		}
		for _, o := range out {
			if err == nil && o.Name == t.Name {
				err = fmt.Errorf("resolution table: target %q is listed twice in %s", t.Name, field)
			}
		}
		out = append(out, t)
		return err == nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("resolution table: %s is empty", field)
	}
	return out, err
}

// nameValue accepts a model name: 1 to MaxNameLen bytes of UTF-8 without
// control characters (it goes into request bodies and access logs).
func nameValue(what string, v gjson.Result) (string, error) {
	s := v.Str
	if v.Type != gjson.String || s == "" || len(s) > MaxNameLen || !utf8.ValidString(s) {
		return "", fmt.Errorf("resolution table: %s %s is not 1-%d bytes of UTF-8", what, clipRaw(v.Raw), MaxNameLen)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return "", fmt.Errorf("resolution table: %s %q holds a control character", what, s)
		}
	}
	return s, nil
}

func clipRaw(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
