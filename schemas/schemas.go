// Package schemas holds the Avro schemas atrelay reads, embedded in the binary
// so that a deployment needs no schema files beside it.
package schemas

import "embed"

// FS holds every *.avsc file of this directory: the current schema and the
// earlier versions producers may still write with (subscription_event.v1.avsc,
// before content_id, device_type, store_product_id, original_purchased_at_ms
// and cumulated_revenues_in_usd), so that their single-object records keep a
// known fingerprint.
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
