package testsupport

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/meshllm/meshllm/"

// TestImportRules checks the rules of the package comment on every Go file
// of the module.
func TestImportRules(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if msg := importBreaksRule(rel, p); msg != "" {
				t.Errorf("%s imports %s: %s", rel, p, msg)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read %d Go files under %s: not the module root?", files, root)
	}
}

// importBreaksRule says which rule file (a slash path from the module root)
// breaks by importing path, or "" if it breaks none.
func importBreaksRule(file, path string) string {
	under := func(dir string) bool { return strings.HasPrefix(file, dir+"/") }
	switch {
	case strings.HasPrefix(path, module+"internal/testsupport/"):
		if !strings.HasSuffix(file, "_test.go") && !under("e2e") && !under("internal/testsupport") {
			return "testsupport is for tests and the e2e harness only"
		}
	case strings.HasPrefix(path, module+"e2e/"):
		deployTest := strings.HasSuffix(file, "_test.go") && (under("deploy") || under("gateway") || under("istio") || under("envoy"))
		if deployTest && path == module+"e2e/deploycheck" {
			break // the deployment files' tests use the static validators
		}
		if !under("e2e") && !under("bench") && !under("cmd") {
			return "the product must not import the e2e harness (shared test code goes in internal/testsupport)"
		}
	}
	// The two products share a floor (internal/) and a contract (pickapi/),
	// and nothing else: neither imports the other's rooms, and the floor
	// and the contract import neither product.
	switch {
	case strings.HasPrefix(path, module+"filter/") && under("picker-svc"):
		return "picker-svc must not import the filter (shared code goes in internal/)"
	case strings.HasPrefix(path, module+"picker-svc/") && under("filter"):
		return "the filter must not import picker-svc (the wire contract is pickapi/; shared code goes in internal/)"
	case (under("internal") || under("pickapi")) && !under("internal/testsupport") &&
		(strings.HasPrefix(path, module+"filter/") || strings.HasPrefix(path, module+"picker-svc/") ||
			strings.HasPrefix(path, module+"bench/") || strings.HasPrefix(path, module+"e2e/")):
		return "the shared floor and the contract import neither product nor the harness"
	}
	return ""
}

func TestImportBreaksRule(t *testing.T) {
	for _, c := range []struct {
		file, path string
		breaks     bool
	}{
		{"filter/load_test.go", module + "internal/testsupport/envoystats", false},
		{"filter/main.go", module + "internal/testsupport/envoystats", true},
		{"e2e/gateway/gateway.go", module + "internal/testsupport/envoystats", false},
		{"filter/harness_test.go", module + "e2e/wasmvm", true},
		{"picker-svc/main.go", module + "e2e/vllmsim", true},
		{"bench/compare/compare.go", module + "e2e/vllmsim", false},
		{"e2e/gateway/gateway.go", module + "e2e/wasmhost", false},
		{"filter/main.go", module + "filter/stats", false},
		{"picker-svc/internal/extproc/extproc.go", module + "filter/llmapi", true},
		{"picker-svc/internal/decision/usage.go", module + "filter/stats", true},
		{"picker-svc/internal/decision/gatewaypath.go", module + "internal/metricnames", false},
		{"filter/stats/stats.go", module + "internal/metricnames", false},
		{"picker-svc/internal/extproc/extproc.go", module + "internal/llmapi", false},
		{"filter/routing.go", module + "picker-svc/pickapi", true},
		{"filter/routing.go", module + "pickapi", false},
		{"filter/metrics.go", module + "internal/labelguard", false},
		{"internal/llmapi/request.go", module + "filter/stats", true},
		{"internal/labelguard/guard.go", module + "picker-svc/internal/scrape", true},
		{"pickapi/pickapi.go", module + "filter/config", true},
		{"pickapi/pickapi.go", module + "internal/jsonscan", false},
		{"deploy/helm/chart_test.go", module + "e2e/deploycheck", false},
		{"deploy/images/images.go", module + "e2e/deploycheck", true},
		{"deploy/helm/chart_test.go", module + "e2e/vllmsim", true},
	} {
		if got := importBreaksRule(c.file, c.path) != ""; got != c.breaks {
			t.Errorf("importBreaksRule(%q, %q) breaks = %v, want %v", c.file, c.path, got, c.breaks)
		}
	}
}
