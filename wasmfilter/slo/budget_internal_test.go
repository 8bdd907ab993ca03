package slo

import "testing"

// TestFullBudgetIsFormatted keeps the constant answered before the first
// flush equal to what formatBudget makes of a whole budget.
func TestFullBudgetIsFormatted(t *testing.T) {
	if got := formatBudget(1); got != fullBudget {
		t.Errorf("formatBudget(1) = %q, fullBudget = %q", got, fullBudget)
	}
}
