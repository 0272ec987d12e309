package archtest

// The layers of atrelay, top to bottom, and what each one's production code
// may import of ours (TestLayerTable keeps this comment equal to the table
// below; the README mirrors it):
//
// TABLE BEGIN
// | layer | packages | may import |
// |---|---|---|
// | face | cmd/..., deploy/kafka/..., internal/gen/... | demo, demo support, assembly, config, edge, sinks, pipeline, codec, schemas |
// | chaos | internal/chaos | demo support, sinks, codec, schemas |
// | demo | internal/demo | demo support, assembly, config, service, edge, sinks, pipeline, codec, schemas |
// | demo support | internal/sandbox, internal/fixture, deploy | pipeline, codec, schemas |
// | assembly | internal/app | config, service, edge, sinks, pipeline, codec, schemas |
// | config | internal/config | service, edge, sinks, pipeline, codec, schemas |
// | service | internal/relay | offsets, sinks, pipeline, codec, schemas; its tests also assembly, config, edge |
// | offsets | internal/relay/offsets | — |
// | edge | internal/telemetry, internal/kafkaconn, internal/groupoffsets, internal/dlqreplay | pipeline, codec, schemas |
// | sinks | sinks/... | pipeline, codec, schemas |
// | pipeline | pipeline/... | pipeline, codec, schemas |
// | codec | codec | schemas |
// | schemas | schemas | — |
// | test only | internal/testkafka, internal/testtls, internal/testotlp | — |
// | leaf helpers | internal/piano, internal/backoff, internal/failurelog, internal/fielderr, internal/inflight, internal/redact, internal/secret | — |
// | checks | internal/archtest | — |
//
// Leaf helpers may be imported from every layer. Test only and demo support
// may be imported from every test (_test.go files); in production, demo
// support only from the layers that list it. A layer imports itself only
// where it lists itself (pipeline/... may; two sinks may not).
// TABLE END
//
// Tests (_test.go files, internal and external) follow the same table, plus
// the test-support packages: a test that needs a higher layer belongs in
// that layer.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// layer is one row of the table. Package patterns are relative to the
// module; "x/..." is x and every package under it.
type layer struct {
	name      string
	pkgs      []string
	mayImport []string // layers its production code and tests may import
	// testsMayImport are layers, above it too, that its tests alone may
	// import: the service's acceptance tests run the assembled service.
	testsMayImport []string
	fromTests      bool // any test may import it
	fromAll        bool // any package may import it (leaf helpers)
}

// layers is the architecture, top to bottom. Every mayImport entry names a
// layer further down the table (or the layer itself), so the table has no
// cycles; TestLayerTable checks that.
var layers = []layer{
	// The commands: the binary, and the deploy and build tools.
	{name: "face", pkgs: []string{"cmd/...", "deploy/kafka/...", "internal/gen/..."},
		mayImport: []string{"demo", "demo support", "assembly", "config", "edge", "sinks", "pipeline", "codec", "schemas"}},
	// The fault suite drives the binary from outside, as an operator
	// would: it builds events (fixture), reads the DLQ and parking headers
	// (sinks) and never imports the service.
	{name: "chaos", pkgs: []string{"internal/chaos"},
		mayImport: []string{"demo support", "sinks", "codec", "schemas"}},
	{name: "demo", pkgs: []string{"internal/demo"},
		mayImport: []string{"demo support", "assembly", "config", "service", "edge", "sinks", "pipeline", "codec", "schemas"}},
	// The sandbox collector and the event generator serve the tests, and
	// ship in `atrelay demo` and `atrelay collector`.
	{name: "demo support", pkgs: []string{"internal/sandbox", "internal/fixture", "deploy"}, fromTests: true,
		mayImport: []string{"pipeline", "codec", "schemas"}},
	{name: "assembly", pkgs: []string{"internal/app"},
		mayImport: []string{"config", "service", "edge", "sinks", "pipeline", "codec", "schemas"}},
	// The application config composes the packages' own Configs.
	{name: "config", pkgs: []string{"internal/config"},
		mayImport: []string{"service", "edge", "sinks", "pipeline", "codec", "schemas"}},
	// Its acceptance tests build the whole service from a configuration
	// (assembly, config), read what it wrote with the adapters beside it
	// (edge: the DLQ replay), and stay beside it: they crash it and watch its
	// commits through hooks that only its own tests can reach
	// (export_test.go), so that no test hook is production API.
	{name: "service", pkgs: []string{"internal/relay"},
		mayImport:      []string{"offsets", "sinks", "pipeline", "codec", "schemas"},
		testsMayImport: []string{"assembly", "config", "edge"}},
	// The only owner of offsets, imported by the service alone.
	{name: "offsets", pkgs: []string{"internal/relay/offsets"}},
	// Adapters the assembly wires beside the service.
	{name: "edge", pkgs: []string{"internal/telemetry", "internal/kafkaconn", "internal/groupoffsets", "internal/dlqreplay"},
		mayImport: []string{"pipeline", "codec", "schemas"}},
	{name: "sinks", pkgs: []string{"sinks/..."},
		mayImport: []string{"pipeline", "codec", "schemas"}},
	{name: "pipeline", pkgs: []string{"pipeline/..."},
		mayImport: []string{"pipeline", "codec", "schemas"}},
	{name: "codec", pkgs: []string{"codec"},
		mayImport: []string{"schemas"}},
	{name: "schemas", pkgs: []string{"schemas"}},
	{name: "test only", pkgs: []string{"internal/testkafka", "internal/testtls", "internal/testotlp"}, fromTests: true},
	// Some do not exist yet; they are where shared rules and types go so
	// that no layer climbs up for them.
	{name: "leaf helpers", pkgs: []string{"internal/piano", "internal/backoff", "internal/failurelog", "internal/fielderr", "internal/inflight", "internal/redact", "internal/secret"}, fromAll: true},
	{name: "checks", pkgs: []string{"internal/archtest"}},
}

// violation is one import that breaks the table, by importing package (and
// whether a test file imports it).
type violation struct {
	pkg, imp string
	test     bool
}

// knownViolations are today's imports that break the table. Each must go;
// when one goes, delete its entry (the test fails on an entry that no longer
// occurs, so the list only shrinks). Do not add to it.
var knownViolations = map[violation]string{}

// pkg is what `go list -json` says of a package.
type pkg struct {
	ImportPath string
	Dir        string
	Module     *struct {
		Path string
		Main bool
	}
	GoFiles      []string
	TestGoFiles  []string
	XTestGoFiles []string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

// goList returns the main module's root, path and packages, with their
// dependencies, as `go list -e -deps -json ./...` from the module root sees
// them. overlay, when not "", is a go list -overlay file.
func goList(t *testing.T, overlay string) (root, mod string, ours []pkg) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed: %v", err)
	}
	out, err := exec.Command(gobin, "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("go env GOMOD: %q, %v", out, err)
	}
	root = filepath.Dir(string(bytes.TrimSpace(out)))
	args := []string{"list", "-e", "-deps",
		"-json=ImportPath,Dir,Module,GoFiles,TestGoFiles,XTestGoFiles,Imports,TestImports,XTestImports,Error"}
	if overlay != "" {
		args = append(args, "-overlay="+overlay)
	}
	cmd := exec.Command(gobin, append(args, "./...")...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Module == nil || !p.Module.Main {
			continue // the standard library and other modules
		}
		mod = p.Module.Path
		ours = append(ours, p)
	}
	if len(ours) == 0 {
		t.Fatal("go list found no package of the main module")
	}
	return root, mod, ours
}

// layerOf returns the layer of a module-relative package path, or nil.
func layerOf(rel string) *layer {
	for i := range layers {
		for _, pat := range layers[i].pkgs {
			if base, ok := strings.CutSuffix(pat, "/..."); ok && (rel == base || strings.HasPrefix(rel, base+"/")) {
				return &layers[i]
			}
			if rel == pat {
				return &layers[i]
			}
		}
	}
	return nil
}

// allowed reports whether package from may import imp (both in the module),
// in production code or, with test, in a test file.
func allowed(from, imp string, test bool) bool {
	lf, li := layerOf(from), layerOf(imp)
	switch {
	case from == imp: // an external test importing its package
		return true
	case lf == nil || li == nil:
		return false
	case li.fromAll, test && li.fromTests, test && slices.Contains(lf.testsMayImport, li.name):
		return true
	}
	return slices.Contains(lf.mayImport, li.name)
}

// check returns, in order, every problem with the packages: a package on no
// layer, an import between our packages that the table does not allow and
// known does not list (naming the file, its package and the import), and an
// entry of known that no longer occurs. Paths in messages are relative to
// root; overlay maps a file to the file holding its content (go list
// -overlay's Replace).
func check(root, mod string, pkgs []pkg, known map[violation]string, overlay map[string]string) []string {
	var problems []string
	rel := func(path string) (string, bool) {
		if path == mod {
			return ".", true
		}
		return strings.CutPrefix(path, mod+"/")
	}
	seen := map[violation]bool{}
	for _, p := range pkgs {
		from, _ := rel(p.ImportPath)
		if p.Error != nil {
			problems = append(problems, fmt.Sprintf("go list: %s: %s", from, p.Error.Err))
		}
		lf := layerOf(from)
		if lf == nil {
			problems = append(problems, fmt.Sprintf("package %s is on no layer: add it to the table in internal/archtest/arch_test.go (and the README's)", from))
			continue
		}
		checkImports := func(imports, files []string, test bool) {
			for _, path := range imports {
				imp, ours := rel(path)
				if !ours || allowed(from, imp, test) {
					continue
				}
				v := violation{from, imp, test}
				if _, ok := known[v]; ok {
					seen[v] = true
					continue
				}
				what := "package " + from
				if test {
					what = "a test of " + from
				}
				where := "on no layer: add it to the table"
				if li := layerOf(imp); li != nil {
					where = "layer " + li.name
				}
				problems = append(problems, fmt.Sprintf("%s: %s (layer %s) imports %s (%s); %s may import only %s",
					importSite(root, p.Dir, files, path, overlay), what, lf.name, imp, where, lf.name, mayImport(lf, test)))
			}
		}
		checkImports(p.Imports, p.GoFiles, false)
		checkImports(append(slices.Clone(p.TestImports), p.XTestImports...), append(slices.Clone(p.TestGoFiles), p.XTestGoFiles...), true)
	}
	var stale []string
	for v, why := range known {
		if !seen[v] {
			kind := "package"
			if v.test {
				kind = "a test of"
			}
			stale = append(stale, fmt.Sprintf("knownViolations lists %s %s → %s (%q), which no longer occurs: delete the entry", kind, v.pkg, v.imp, why))
		}
	}
	slices.Sort(stale)
	return append(problems, stale...)
}

// TestImportDirections fails on every import between our packages, in
// production code or in tests, that the table does not allow and that
// knownViolations does not list; and on every knownViolations entry that no
// longer occurs.
func TestImportDirections(t *testing.T) {
	root, mod, pkgs := goList(t, "")
	for _, p := range check(root, mod, pkgs, knownViolations, nil) {
		t.Error(p)
	}
}

// TestCheckCatchesViolations proves that TestImportDirections fails, and
// says where, on imports that break the table. It adds files through go
// list's -overlay (nothing is written to the tree, which others edit and
// build meanwhile): pipeline importing internal/relay, one sink importing
// another, production code importing a test-only package, and a test
// reaching up; and a knownViolations entry that does not occur.
func TestCheckCatchesViolations(t *testing.T) {
	root, mod, _ := goList(t, "")
	dir := t.TempDir()
	files := map[string]string{
		"pipeline/zz_archtest_up.go":             "package pipeline\n\nimport _ %q\n",
		"sinks/dlq/zz_archtest_sibling.go":       "package dlq\n\nimport _ %q\n",
		"schemas/zz_archtest_testonly.go":        "package schemas\n\nimport _ %q\n",
		"sinks/dlq/zz_archtest_reach_up_test.go": "package dlq_test\n\nimport _ %q\n",
	}
	imports := map[string]string{
		"pipeline/zz_archtest_up.go":             "internal/relay",
		"sinks/dlq/zz_archtest_sibling.go":       "sinks/atinternet",
		"schemas/zz_archtest_testonly.go":        "internal/testkafka",
		"sinks/dlq/zz_archtest_reach_up_test.go": "internal/relay",
	}
	overlay := map[string]string{}
	for name, src := range files {
		content := filepath.Join(dir, filepath.Base(name))
		if err := os.WriteFile(content, fmt.Appendf(nil, src, mod+"/"+imports[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		overlay[filepath.Join(root, name)] = content
	}
	js, err := json.Marshal(map[string]any{"Replace": overlay})
	if err != nil {
		t.Fatal(err)
	}
	ov := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(ov, js, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, pkgs := goList(t, ov)
	known := maps.Clone(knownViolations)
	known[violation{"codec", "sinks/dlq", false}] = "a stale entry"
	got := strings.Join(check(root, mod, pkgs, known, overlay), "\n")
	for _, want := range []string{
		"pipeline/zz_archtest_up.go:3:8: package pipeline (layer pipeline) imports internal/relay (layer service); pipeline may import only pipeline, codec, schemas, the leaf helpers",
		"sinks/dlq/zz_archtest_sibling.go:3:8: package sinks/dlq (layer sinks) imports sinks/atinternet (layer sinks)",
		"schemas/zz_archtest_testonly.go:3:8: package schemas (layer schemas) imports internal/testkafka (layer test only)",
		"sinks/dlq/zz_archtest_reach_up_test.go:3:8: a test of sinks/dlq (layer sinks) imports internal/relay (layer service)",
		`knownViolations lists package codec → sinks/dlq ("a stale entry"), which no longer occurs`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("check did not report\n\t%s\nit reported:\n%s", want, got)
		}
	}
	t.Logf("what the check reports with the scratch files:\n%s", got)
}

// mayImport describes what a layer may import, for error messages.
func mayImport(l *layer, test bool) string {
	what := append(slices.Clone(l.mayImport), "the leaf helpers")
	if test {
		what = append(append(what, l.testsMayImport...), "the test-support packages")
	}
	return strings.Join(what, ", ")
}

// importSite returns "file:line:col", relative to root, of the first of
// files (in dir) that imports path, or dir when none can be read.
func importSite(root, dir string, files []string, path string, overlay map[string]string) string {
	fset := token.NewFileSet()
	for _, name := range files {
		filename := filepath.Join(dir, name)
		var src any
		if content, ok := overlay[filename]; ok {
			b, err := os.ReadFile(content)
			if err != nil {
				continue
			}
			src = b
		}
		f, err := parser.ParseFile(fset, filename, src, parser.ImportsOnly)
		if err != nil {
			continue
		}
		for _, spec := range f.Imports {
			if p, _ := strconv.Unquote(spec.Path.Value); p == path {
				pos := fset.Position(spec.Pos())
				if r, err := filepath.Rel(root, pos.Filename); err == nil {
					pos.Filename = r
				}
				return pos.String()
			}
		}
	}
	if r, err := filepath.Rel(root, dir); err == nil {
		return r
	}
	return dir
}

// TestLayerTable checks the table itself: every layer named once, every
// package pattern on one layer, every mayImport entry a layer further down
// (or the layer itself), the leaf helpers importing nothing of ours; and
// that the comment at the top of this file is the table.
func TestLayerTable(t *testing.T) {
	index := map[string]int{}
	patterns := map[string]string{}
	for i, l := range layers {
		if _, dup := index[l.name]; dup {
			t.Errorf("layer %q appears twice", l.name)
		}
		index[l.name] = i
		for _, p := range l.pkgs {
			if other, dup := patterns[p]; dup {
				t.Errorf("package %s is on layers %s and %s", p, other, l.name)
			}
			patterns[p] = l.name
		}
	}
	for i, l := range layers {
		for _, m := range l.mayImport {
			j, ok := index[m]
			switch {
			case !ok:
				t.Errorf("layer %s may import %q, which is no layer", l.name, m)
			case j < i:
				t.Errorf("layer %s may import %s, which is above it: the table must read top-down", l.name, m)
			case j == i && l.name != m:
				t.Errorf("layer %s: bad entry %s", l.name, m)
			}
		}
		for _, m := range l.testsMayImport {
			if _, ok := index[m]; !ok {
				t.Errorf("the tests of layer %s may import %q, which is no layer", l.name, m)
			}
		}
		if l.fromAll && len(l.mayImport) > 0 {
			t.Errorf("layer %s may be imported from every layer, so it may import nothing of ours", l.name)
		}
	}
	src, err := os.ReadFile("arch_test.go")
	if err != nil {
		t.Fatal(err)
	}
	want := comment(markdown())
	if !bytes.Contains(src, []byte(want)) {
		t.Errorf("the comment at the top of arch_test.go is not the table; replace its rows with:\n%s", want)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, []byte(markdown())) {
		t.Errorf("README.md's code map does not show the layer table; put this in it:\n%s", markdown())
	}
}

// markdown renders the table as the README shows it.
func markdown() string {
	var b strings.Builder
	b.WriteString("| layer | packages | may import |\n|---|---|---|\n")
	for _, l := range layers {
		may := strings.Join(l.mayImport, ", ")
		if may == "" {
			may = "—"
		}
		if len(l.testsMayImport) > 0 {
			may += "; its tests also " + strings.Join(l.testsMayImport, ", ")
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", l.name, strings.Join(l.pkgs, ", "), may)
	}
	return b.String()
}

func comment(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n") {
		b.WriteString("// " + line)
	}
	return b.String() + "\n"
}
