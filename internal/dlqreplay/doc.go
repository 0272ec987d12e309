// Package dlqreplay puts dead-lettered records back on their source topic
// (`atrelay dlq replay`): it reads the dead-letter topic with a plain
// consumer (no group, so the service's group and its offsets are never
// touched), selects records by reason and source position, and re-produces
// each with its original key, value and headers, without the ones the
// dead-letter writer added.
package dlqreplay
