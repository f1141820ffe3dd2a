package inference

import "fmt"

// targetSpec is one weighted target as an object writes it.
type targetSpec struct {
	name   string
	weight *int64
}

// targetRules are what differs between the two weighted target lists
// (InferenceModel.spec.targetModels, an InferenceModelRewrite rule's
// targets): the name's key, the smallest weight, what the list holds.
type targetRules struct {
	nameKey    string // "name" or "modelRewrite"
	minWeight  int64
	what       string // in "set a weight on every <what> or on none"
	maxNameLen int    // 0: no limit here
}

// fieldError is a check's failure at a field of the object.
type fieldError struct{ field, msg string }

// weightedTargets checks specs, found at field, and returns them as
// Targets: names required and listed once, weights within
// minWeight..MaxWeight and set on every target or on none (unset weights
// share equally, as the upstream draws uniformly when every weight is 0:
// llm-d/llm-d-router pkg/epp/requestcontrol/director.go
// selectWeightedModel).
func weightedTargets(field string, specs []targetSpec, r targetRules) ([]Target, int64, *fieldError) {
	var out []Target
	withWeight, total := 0, int64(0)
	seen := map[string]bool{}
	for i, t := range specs {
		tf := fmt.Sprintf("%s[%d]", field, i)
		if t.name == "" {
			return nil, 0, &fieldError{tf + "." + r.nameKey, "is required"}
		}
		if r.maxNameLen > 0 && len(t.name) > r.maxNameLen {
			return nil, 0, &fieldError{tf + "." + r.nameKey, fmt.Sprintf("is longer than %d bytes", r.maxNameLen)}
		}
		if seen[t.name] {
			return nil, 0, &fieldError{tf + "." + r.nameKey, fmt.Sprintf("%q is listed twice", t.name)}
		}
		seen[t.name] = true
		w := int64(1)
		if t.weight != nil {
			withWeight++
			w = *t.weight
			if w < r.minWeight || w > MaxWeight {
				return nil, 0, &fieldError{tf + ".weight", fmt.Sprintf("%d is outside %d..%d", w, r.minWeight, MaxWeight)}
			}
		}
		total += w
		out = append(out, Target{Name: t.name, Weight: int32(w)})
	}
	if withWeight != 0 && withWeight != len(specs) {
		return nil, 0, &fieldError{field, "set a weight on every " + r.what + " or on none"}
	}
	return out, total, nil
}
