package codec

import (
	"fmt"
	"time"
)

// required lists the fields without a default in the reader schema: a writer
// schema without one of them cannot produce a usable event.
var required = [...]string{"event_id", "event_name", "event_created_at_ms", "app_id", "environment", "store", "product", "plan"}

const (
	hasEventID uint16 = 1 << iota
	hasEventName
	hasCreatedAt
	hasAppID
	hasEnvironment
	hasStore
	hasProduct
	hasPlan
	hasAllRequired = 1<<len(required) - 1
)

// fromNative fills ev from goavro's native record by field name: fields the
// reader does not know are ignored, optional fields the writer did not have
// stay null.
func fromNative(m map[string]any, ev *Event) error {
	*ev = Event{APIVersion: 3, OfferType: "NONE"} // the reader schema's defaults
	var has uint16
	var err error
	// Looking the reader's fields up is cheaper than ranging over goavro's
	// map, and it ignores the writer's extra fields for free.
	for _, k := range fieldNames {
		v, ok := m[k]
		if !ok {
			continue
		}
		switch k {
		case "event_id":
			ev.EventID, err = str(k, v)
			has |= hasEventID
		case "event_name":
			ev.EventName, err = str(k, v)
			has |= hasEventName
		case "event_created_at_ms":
			var t Null[time.Time]
			t, err = timestamp(k, v)
			ev.EventCreatedAt = t.Value
			if t.Valid {
				has |= hasCreatedAt
			}
		case "api_version":
			var n int64
			n, err = integer(k, v)
			ev.APIVersion = int32(n)
		case "app_id":
			ev.AppID, err = str(k, v)
			has |= hasAppID
		case "environment":
			ev.Environment, err = str(k, v)
			has |= hasEnvironment
		case "user_id":
			ev.UserID, err = str(k, v)
		case "anonymous_user_id":
			ev.AnonymousUserID, err = str(k, v)
		case "user_attributes":
			ev.UserAttributes, err = attributes(k, v)
		case "store":
			ev.Store, err = str(k, v)
			has |= hasStore
		case "store_country":
			ev.StoreCountry, err = str(k, v)
		case "product":
			ev.Product, err = str(k, v)
			has |= hasProduct
		case "plan":
			ev.Plan, err = str(k, v)
			has |= hasPlan
		case "previous_plan":
			ev.PreviousPlan, err = str(k, v)
		case "offer_identifier":
			ev.OfferIdentifier, err = str(k, v)
		case "offer_type":
			ev.OfferType, err = str(k, v)
		case "plan_price_in_customer_currency":
			ev.PlanPrice, err = double(k, v)
		case "customer_currency":
			ev.CustomerCurrency, err = str(k, v)
		case "amount_in_customer_currency":
			ev.Amount, err = double(k, v)
		case "purchased_at_ms":
			ev.PurchasedAt, err = timestamp(k, v)
		case "next_renewal_at_ms":
			ev.NextRenewalAt, err = timestamp(k, v)
		case "subscription_status":
			ev.SubscriptionStatus, err = str(k, v)
		case "is_family_shared":
			b, ok := unwrap(v).(bool)
			if !ok && unwrap(v) != nil {
				err = wrongType(k, v)
			}
			ev.IsFamilyShared = b
		case "store_transaction_id":
			ev.StoreTransactionID, err = str(k, v)
		case "store_original_transaction_id":
			ev.StoreOriginalTransactionID, err = str(k, v)
		case "purchasely_subscription_id":
			ev.PurchaselySubscriptionID, err = str(k, v)
		case "placement":
			ev.Placement, err = str(k, v)
		case "presentation":
			ev.Presentation, err = str(k, v)
		case "ab_test":
			ev.ABTest, err = str(k, v)
		case "ab_test_variant":
			ev.ABTestVariant, err = str(k, v)
		case "audience":
			ev.Audience, err = str(k, v)
		}
		if err != nil {
			return err
		}
	}
	if has != hasAllRequired {
		for i, name := range required {
			if has&(1<<i) == 0 {
				return permanent("missing_field", ErrMissingField, "%s", name)
			}
		}
	}
	return nil
}

// fieldNames are the reader schema's fields.
var fieldNames = [...]string{
	"event_id", "event_name", "event_created_at_ms", "api_version", "app_id", "environment", "user_id",
	"anonymous_user_id", "user_attributes", "store", "store_country", "product", "plan", "previous_plan",
	"offer_identifier", "offer_type", "plan_price_in_customer_currency", "customer_currency",
	"amount_in_customer_currency", "purchased_at_ms", "next_renewal_at_ms", "subscription_status",
	"is_family_shared", "store_transaction_id", "store_original_transaction_id", "purchasely_subscription_id",
	"placement", "presentation", "ab_test", "ab_test_variant", "audience",
}

// unwrap returns the value of a union branch ({"string": "x"}) or v itself.
func unwrap(v any) any {
	if u, ok := v.(map[string]any); ok && len(u) == 1 {
		for _, x := range u {
			return x
		}
	}
	return v
}

func wrongType(field string, v any) error {
	return permanent("wrong_type", ErrWrongType, "%s: %T", field, unwrap(v))
}

// branch returns a union's value when it is of the expected branch: a map
// lookup, much cheaper than ranging over goavro's one-entry map.
func branch(v any, name string) (any, bool) {
	if u, ok := v.(map[string]any); ok {
		x, ok := u[name]
		return x, ok
	}
	return nil, false
}

func str(field string, v any) (string, error) {
	if x, ok := branch(v, "string"); ok {
		if s, ok := x.(string); ok {
			return s, nil
		}
	}
	switch x := unwrap(v).(type) {
	case string:
		return x, nil
	case nil:
		return "", nil
	default:
		return "", wrongType(field, v)
	}
}

func integer(field string, v any) (int64, error) {
	switch x := unwrap(v).(type) {
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case nil:
		return 0, nil
	default:
		return 0, wrongType(field, v)
	}
}

func double(field string, v any) (Null[float64], error) {
	if x, ok := branch(v, "double"); ok {
		if f, ok := x.(float64); ok {
			return Some(f), nil
		}
	}
	switch x := unwrap(v).(type) {
	case float64:
		return Some(x), nil
	case float32:
		return Some(float64(x)), nil
	case int32:
		return Some(float64(x)), nil
	case int64:
		return Some(float64(x)), nil
	case nil:
		return Null[float64]{}, nil
	default:
		return Null[float64]{}, wrongType(field, v)
	}
}

// timestamp accepts a timestamp-millis (time.Time from goavro) or a plain
// long of epoch milliseconds, as older writers may have sent.
func timestamp(field string, v any) (Null[time.Time], error) {
	if x, ok := branch(v, "long.timestamp-millis"); ok {
		if t, ok := x.(time.Time); ok {
			return Some(t.UTC()), nil
		}
	}
	switch x := unwrap(v).(type) {
	case time.Time:
		return Some(x.UTC()), nil
	case int64:
		return Some(time.UnixMilli(x).UTC()), nil
	case nil:
		return Null[time.Time]{}, nil
	default:
		return Null[time.Time]{}, wrongType(field, v)
	}
}

func attributes(field string, v any) (map[string]string, error) {
	// A nullable map arrives as the union branch {"map": {...}}; a plain map
	// with one attribute must not be mistaken for one.
	if u, ok := v.(map[string]any); ok && len(u) == 1 {
		if inner, ok := u["map"].(map[string]any); ok {
			v = inner
		}
	}
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			return nil, nil
		}
		out := make(map[string]string, len(x))
		for k, a := range x {
			s, ok := a.(string)
			if !ok {
				return nil, wrongType(field+"."+k, a)
			}
			out[k] = s
		}
		return out, nil
	case nil:
		return nil, nil
	default:
		return nil, wrongType(field, v)
	}
}

// Native returns ev as goavro's native form for the SubscriptionEvent schema:
// the inverse of decoding, used to encode fixtures and test records. goavro
// ignores map keys its schema does not have, so the same map also encodes
// with an older writer schema.
func Native(ev *Event) map[string]any {
	m := map[string]any{
		"event_id":                        ev.EventID,
		"event_name":                      ev.EventName,
		"event_created_at_ms":             ev.EventCreatedAt,
		"api_version":                     ev.APIVersion,
		"app_id":                          ev.AppID,
		"environment":                     ev.Environment,
		"user_id":                         optString(ev.UserID),
		"anonymous_user_id":               optString(ev.AnonymousUserID),
		"user_attributes":                 attrsNative(ev.UserAttributes),
		"store":                           ev.Store,
		"store_country":                   optString(ev.StoreCountry),
		"product":                         ev.Product,
		"plan":                            ev.Plan,
		"previous_plan":                   optString(ev.PreviousPlan),
		"offer_identifier":                optString(ev.OfferIdentifier),
		"offer_type":                      ev.OfferType,
		"plan_price_in_customer_currency": optDouble(ev.PlanPrice),
		"customer_currency":               optString(ev.CustomerCurrency),
		"amount_in_customer_currency":     optDouble(ev.Amount),
		"purchased_at_ms":                 optTime(ev.PurchasedAt),
		"next_renewal_at_ms":              optTime(ev.NextRenewalAt),
		"subscription_status":             optString(ev.SubscriptionStatus),
		"is_family_shared":                ev.IsFamilyShared,
		"store_transaction_id":            optString(ev.StoreTransactionID),
		"store_original_transaction_id":   optString(ev.StoreOriginalTransactionID),
		"purchasely_subscription_id":      optString(ev.PurchaselySubscriptionID),
		"placement":                       optString(ev.Placement),
		"presentation":                    optString(ev.Presentation),
		"ab_test":                         optString(ev.ABTest),
		"ab_test_variant":                 optString(ev.ABTestVariant),
		"audience":                        optString(ev.Audience),
	}
	return m
}

func optString(s string) any {
	if s == "" {
		return nil
	}
	return map[string]any{"string": s}
}

func optDouble(n Null[float64]) any {
	if !n.Valid {
		return nil
	}
	return map[string]any{"double": n.Value}
}

func optTime(n Null[time.Time]) any {
	if !n.Valid {
		return nil
	}
	return map[string]any{"long.timestamp-millis": n.Value}
}

func attrsNative(a map[string]string) map[string]any {
	m := make(map[string]any, len(a))
	for k, v := range a {
		m[k] = v
	}
	return m
}

// String returns a short description of the event for logs.
func (ev *Event) String() string {
	return fmt.Sprintf("%s %s app=%s env=%s", ev.EventID, ev.EventName, ev.AppID, ev.Environment)
}
