package codec

import "time"

// Event is one Purchasely subscription event, decoded. Its fields are those
// of schemas/subscription_event.avsc (SPEC §3), typed.
//
// Optional string fields hold "" when the record has null; optional numbers
// and times use Null so that a real zero (a free plan's price of 0) stays
// distinguishable from "absent". An Event is owned by whoever decoded it and
// is not safe for concurrent mutation.
type Event struct {
	EventID                    string
	EventName                  string
	EventCreatedAt             time.Time // event_created_at_ms, UTC
	APIVersion                 int32
	AppID                      string
	Environment                string
	UserID                     string
	AnonymousUserID            string
	UserAttributes             map[string]string
	Store                      string
	StoreCountry               string
	Product                    string
	Plan                       string
	PreviousPlan               string
	OfferIdentifier            string
	OfferType                  string
	PlanPrice                  Null[float64] // plan_price_in_customer_currency
	CustomerCurrency           string
	Amount                     Null[float64] // amount_in_customer_currency
	PurchasedAt                Null[time.Time]
	NextRenewalAt              Null[time.Time]
	SubscriptionStatus         string
	IsFamilyShared             bool
	StoreTransactionID         string
	StoreOriginalTransactionID string
	PurchaselySubscriptionID   string
	Placement                  string
	Presentation               string
	ABTest                     string
	ABTestVariant              string
	Audience                   string
}

// Null is an optional value: Valid is false when the record held Avro null
// or when its writer schema did not have the field.
type Null[T any] struct {
	Value T
	Valid bool
}

// Some returns a valid Null holding v.
func Some[T any](v T) Null[T] { return Null[T]{Value: v, Valid: true} }
