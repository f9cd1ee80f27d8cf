package graph

import (
	"regexp"
	"strings"
)

// The parts of a Group.Reason that name one place in one model: the scope
// or op index after an op kind ("aten::view in features.3", "aten::view (op
// 12)"), a parameter name, a layer path, a value id.
var (
	reOpPlace   = regexp.MustCompile(`([A-Za-z_]\w*::[A-Za-z_]\w*)(?: in [^\s:]+| \(op \d+\))`)
	reParamRead = regexp.MustCompile(`^\S+ (is read .*)$`)
	reNoFit     = regexp.MustCompile(`^\S+ does not fit tensor \S+$`)
	reGrouped   = regexp.MustCompile(`^grouped (transposed )?conv \S+ \(groups=\d+[^)]*\)(.*)$`)
	reDepthwise = regexp.MustCompile(`^depthwise conv \S+ (on .*)$`)
	reValue     = regexp.MustCompile(`^value \d+ (is read .*)$`)
)

// ReasonKind is a frozen group's Reason without what names one place in the
// model (module scopes, op indices, parameter and layer names), so that
// groups frozen for the same cause share one key: "aten::view in
// features.3 splits or merges the channel dim with another dim" and
// "aten::view (op 8) splits ..." are both "aten::view splits or merges the
// channel dim with another dim". A reason it does not recognise is returned
// as it is.
func ReasonKind(reason string) string {
	r := strings.TrimSpace(reason)
	switch {
	case r == "":
		return "no producer"
	case reValue.MatchString(r):
		r = reValue.ReplaceAllString(r, "a value $1")
	case reParamRead.MatchString(r):
		r = reParamRead.ReplaceAllString(r, "a parameter $1")
	case reNoFit.MatchString(r):
		return "a member does not fit its tensor"
	case reGrouped.MatchString(r):
		return reGrouped.ReplaceAllString(r, "grouped ${1}conv$2")
	case reDepthwise.MatchString(r):
		r = reDepthwise.ReplaceAllString(r, "depthwise conv $1")
	}
	return reOpPlace.ReplaceAllString(r, "$1")
}
