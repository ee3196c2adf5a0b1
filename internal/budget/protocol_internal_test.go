package budget

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// luaHeader reads a script's stated contract: the description of each
// ARGV[n] (its line, from n on) and the names of its reply's fields.
func luaHeader(t *testing.T, script string) (argv []string, reply []string) {
	t.Helper()
	var header []string
	for line := range strings.SplitSeq(script, "\n") {
		if !strings.HasPrefix(line, "--") {
			break
		}
		header = append(header, strings.TrimSpace(strings.TrimPrefix(line, "--")))
	}
	text := strings.Join(header, "\n")
	marks := regexp.MustCompile(`ARGV\[(\d+)\]`).FindAllStringSubmatchIndex(text, -1)
	for k, m := range marks {
		n, err := strconv.Atoi(text[m[2]:m[3]])
		require.NoError(t, err)
		end := len(text)
		if k+1 < len(marks) {
			end = marks[k+1][0]
		}
		desc, _, _ := strings.Cut(text[m[1]:end], "\n")
		for len(argv) < n {
			argv = append(argv, "")
		}
		argv[n-1] = strings.TrimSpace(desc)
	}
	r := regexp.MustCompile(`Returns \{([^}]*)\}`).FindStringSubmatch(text)
	require.NotNil(t, r, "the script states what it returns")
	// "retry (ms, 0 if granted)" names the field retry.
	fields := regexp.MustCompile(`\([^)]*\)`).ReplaceAllString(r[1], "")
	for f := range strings.SplitSeq(fields, ",") {
		reply = append(reply, strings.TrimSpace(f))
	}
	return argv, reply
}

// The Go side and the scripts match arguments and replies by position: the
// names the Go side gives each position are those the script's header
// gives, and the Go side passes exactly as many arguments as the script
// reads.
func TestScriptArgumentsAndRepliesMatchTheirHeaders(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name       string
		script     string
		argNames   []string
		argc       int
		replyNames []string
	}{
		{"take.lua", takeLua, takeArgNames, len(takeArgs{}.argv()), takeReplyNames},
		{"observe.lua", observeLua, observeArgNames, len(observeArgs{}.argv()), observeReplyNames},
	} {
		argv, reply := luaHeader(t, c.script)
		require.Len(t, argv, c.argc, "%s: the Go side passes as many ARGV as the header states", c.name)
		require.Len(t, c.argNames, len(argv), c.name)
		for i, desc := range argv {
			require.True(t, strings.HasPrefix(strings.ToLower(desc), strings.ToLower(c.argNames[i])),
				"%s ARGV[%d] is %q in the script, %q in Go", c.name, i+1, desc, c.argNames[i])
		}
		require.Equal(t, reply, c.replyNames, "%s: reply fields in order", c.name)
		for i := 1; i <= len(argv); i++ {
			require.Contains(t, c.script, "ARGV["+strconv.Itoa(i)+"]", c.name)
		}
		require.NotContains(t, c.script, "ARGV["+strconv.Itoa(len(argv)+1)+"]", "%s reads an ARGV the Go side does not pass", c.name)
	}
}

func TestPauseMessageRoundTrips(t *testing.T) {
	t.Parallel()
	account, end, now, ok := decodePause(encodePause("halaxy-au/clinic-42", 1700000001000, 1700000000000))
	require.True(t, ok)
	require.Equal(t, "halaxy-au/clinic-42", account)
	require.EqualValues(t, 1700000001000, end)
	require.EqualValues(t, 1700000000000, now)
	for _, bad := range []string{"", "a\x001", "a\x00x\x001", "a\x001\x002\x003"} {
		_, _, _, ok := decodePause(bad)
		require.False(t, ok, "%q", bad)
	}
}
