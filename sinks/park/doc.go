// Package park writes the records of a site that has failed for too long to
// the parking topic: the original key, value and headers, plus headers
// naming the integration, when its site started failing, how often the
// record was sent, and where it came from. The parking consumer reads them
// back and delivers them once the site answers again.
package park
