// Command eventgen generates codec/event_gen.go from the Avro schema of the
// Purchasely subscription event: the Event struct, the decoder's field list,
// its required set and bits, the native-to-struct switch, the Native encoder
// and the Fields table. The schema is the one place a field is declared.
//
// It runs from codec/event.go:
//
//	//go:generate go run ../internal/gen/eventgen -schema ../schemas/subscription_event.avsc -out event_gen.go
//
// It rewrites the output only when its content changes, and fails, writing
// nothing, on a schema shape it does not know how to decode.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
)

func main() {
	schema := flag.String("schema", "", "path of the Avro record schema (.avsc)")
	out := flag.String("out", "", "path of the Go file to write")
	pkg := flag.String("package", "codec", "package of the generated file")
	flag.Parse()
	if err := run(*schema, *out, *pkg); err != nil {
		fmt.Fprintln(os.Stderr, "eventgen:", err)
		os.Exit(1)
	}
}

func run(schemaPath, out, pkg string) error {
	if schemaPath == "" || out == "" {
		return fmt.Errorf("-schema and -out are required")
	}
	text, err := os.ReadFile(schemaPath)
	if err != nil {
		return err
	}
	src, err := generate(text, schemaPath, pkg)
	if err != nil {
		return fmt.Errorf("%s: %w", schemaPath, err)
	}
	if old, err := os.ReadFile(out); err == nil && bytes.Equal(old, src) {
		return nil
	}
	return os.WriteFile(out, src, 0o644)
}
