package ingest

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"fraudlab/gateway/internal/fraudpb"
)

// MinTimestampMS is 2000-01-01T00:00:00Z: older "epoch milliseconds" are seconds or garbage.
const MinTimestampMS int64 = 946_684_800_000

// TransactionTypes are PaySim's transaction types, in the order the messages list them.
var TransactionTypes = []string{"CASH_IN", "CASH_OUT", "DEBIT", "PAYMENT", "TRANSFER"}

// Problems lists everything wrong with one transaction, each naming the field and its value, in the words of
// fraudlab.ingest.service.transaction_problems: the two servers must refuse alike, message for message.
// latestMS is the server's clock plus the allowed skew. A valid transaction gets nil.
func Problems(m *fraudpb.TransactionRequest, latestMS int64) []string {
	if m.TransactionId != "" && isType(m.Type) && plausible(m.Amount) && plausible(m.OldBalanceOrig) &&
		plausible(m.NewBalanceOrig) && plausible(m.OldBalanceDest) && plausible(m.NewBalanceDest) &&
		MinTimestampMS <= m.Timestamp && m.Timestamp <= latestMS && (m.IpAddress == "" || isIPAddress(m.IpAddress)) {
		return nil
	}
	var problems []string
	if m.TransactionId == "" {
		problems = append(problems, "transaction_id='' is empty: give every transaction a unique id (a UUID)")
	}
	if !isType(m.Type) {
		problems = append(problems, fmt.Sprintf("type=%s is not one of %s", PyStr(m.Type), strings.Join(TransactionTypes, ", ")))
	}
	amounts := []struct {
		name  string
		value float64
	}{
		{"amount", m.Amount}, {"old_balance_orig", m.OldBalanceOrig}, {"new_balance_orig", m.NewBalanceOrig},
		{"old_balance_dest", m.OldBalanceDest}, {"new_balance_dest", m.NewBalanceDest},
	}
	for _, field := range amounts {
		if !plausible(field.value) {
			problems = append(problems, fmt.Sprintf("%s=%s must be a finite number >= 0", field.name, PyFloat(field.value)))
		}
	}
	if stamp := m.Timestamp; stamp < MinTimestampMS || stamp > latestMS {
		hint := ""
		if MinTimestampMS/1000 <= stamp && stamp <= latestMS/1000 {
			hint = " (it looks like seconds)"
		}
		problems = append(problems, fmt.Sprintf("timestamp=%d is not plausible epoch milliseconds%s: expected %d "+
			"(2000-01-01) to %d (the server's clock plus the allowed skew)", stamp, hint, MinTimestampMS, latestMS))
	}
	if m.IpAddress != "" && !isIPAddress(m.IpAddress) {
		problems = append(problems, fmt.Sprintf("ip_address=%s is not an IPv4 or IPv6 address (leave it empty when unknown)",
			PyStr(m.IpAddress)))
	}
	return problems
}

func plausible(value float64) bool { return value >= 0 && value < math.Inf(1) }

func isType(text string) bool {
	for _, known := range TransactionTypes {
		if text == known {
			return true
		}
	}
	return false
}

// isIPAddress accepts what Python's ipaddress.ip_address accepts: dotted IPv4 without leading zeros, IPv6 text forms
// (embedded IPv4 and a scope id included).
func isIPAddress(text string) bool {
	_, err := netip.ParseAddr(text)
	return err == nil
}

// PyFloat formats a float as Python's repr does: the shortest digits that read back, "-5.0" not "-5", exponent
// notation below 1e-4 and from 1e16 on, "nan" and "inf".
func PyFloat(value float64) string {
	switch {
	case math.IsNaN(value):
		return "nan"
	case math.IsInf(value, 1):
		return "inf"
	case math.IsInf(value, -1):
		return "-inf"
	}
	scientific := strconv.FormatFloat(value, 'e', -1, 64) // e.g. -1.5e+16, 5e-07
	mantissa, exponentText, _ := strings.Cut(scientific, "e")
	exponent, _ := strconv.Atoi(exponentText)
	if exponent < -4 || exponent >= 16 {
		sign := "+"
		if exponent < 0 {
			sign, exponent = "-", -exponent
		}
		return fmt.Sprintf("%se%s%02d", mantissa, sign, exponent)
	}
	fixed := strconv.FormatFloat(value, 'f', -1, 64)
	if !strings.Contains(fixed, ".") {
		fixed += ".0"
	}
	return fixed
}

// PyStr quotes a string as Python's repr does: single quotes unless the text holds a single quote and no double one,
// backslash escapes for the quote, backslashes and unprintable characters.
func PyStr(text string) string {
	quote := '\''
	if strings.ContainsRune(text, '\'') && !strings.ContainsRune(text, '"') {
		quote = '"'
	}
	var out strings.Builder
	out.WriteRune(quote)
	for _, r := range text {
		switch {
		case r == quote || r == '\\':
			out.WriteRune('\\')
			out.WriteRune(r)
		case r == '\t':
			out.WriteString(`\t`)
		case r == '\n':
			out.WriteString(`\n`)
		case r == '\r':
			out.WriteString(`\r`)
		case !strconv.IsPrint(r) && r != ' ':
			out.WriteString(escapeRune(r))
		default:
			out.WriteRune(r)
		}
	}
	out.WriteRune(quote)
	return out.String()
}

func escapeRune(r rune) string {
	switch {
	case r < 0x100:
		return fmt.Sprintf(`\x%02x`, r)
	case r < 0x10000:
		return fmt.Sprintf(`\u%04x`, r)
	default:
		return fmt.Sprintf(`\U%08x`, r)
	}
}
