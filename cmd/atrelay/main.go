// Command atrelay forwards Purchasely subscription events from Kafka to
// AT Internet / Piano Analytics. See README.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "atrelay: not yet wired")
	os.Exit(2)
}
