// Package dlq writes records atrelay cannot process to the dead-letter topic:
// the original key, value and headers, plus headers saying where the record
// came from, which stage failed, and why. A record too large for the topic is
// written as a pointer (no value), so that it never stalls its partition.
package dlq
