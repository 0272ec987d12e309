// Package schemas holds the Avro schemas atrelay reads, embedded in the binary
// so that a deployment needs no schema files beside it.
package schemas

import "embed"

// FS holds every *.avsc file of this directory.
//
//go:embed *.avsc
var FS embed.FS

// SubscriptionEventFile is the path, inside FS and in the repository's
// schemas/ directory, of the Purchasely subscription event schema.
const SubscriptionEventFile = "subscription_event.avsc"

// SubscriptionEvent returns the text of the io.purchasely.events.SubscriptionEvent schema.
func SubscriptionEvent() string {
	b, err := FS.ReadFile(SubscriptionEventFile)
	if err != nil {
		// The file is embedded at build time; failing here means the binary is broken.
		panic("schemas: embedded " + SubscriptionEventFile + " missing: " + err.Error())
	}
	return string(b)
}
