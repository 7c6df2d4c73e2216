"""Redaction: every kind of secret is replaced and counted; ordinary text is left alone.

Fake secrets are assembled at run time so that no secret-shaped literal sits in the source.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import urllib.parse
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agtrace.eventlog import Redactor, base64_chunks, base64_forms, is_secret_name
from agtrace.eventlog.credential import credential_content
from agtrace.eventlog.secret import LABELLED_KIND, SHAPES
from agtrace.eventlog.wrapped import CHUNK

ALNUM = "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY"  # 32 mixed characters with digits


def fake(prefix: str, length: int, alphabet: str = ALNUM) -> str:
    return prefix + (alphabet * (length // len(alphabet) + 1))[:length]


PEM = "\n".join(
    ["-----BEGIN RSA " + "PRIVATE KEY-----"]
    + [fake("", 64, ALNUM + "+/")] * 3
    + ["-----END RSA " + "PRIVATE KEY-----"]
)
AWS_SECRET = fake("", 40, ALNUM + "/+")
JWT = ".".join([
    base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("="),
    base64.urlsafe_b64encode(b'{"sub":"1234567890","name":"agent"}').decode().rstrip("="),
    fake("", 43, ALNUM + "-_"),
])

# (kind, text containing one secret, the secret itself)
CASES = [
    ("openai_key", "OPENAI key is {}.", fake("sk" + "-", 48)),
    ("openai_key", "key={}", fake("sk" + "-proj-", 100, ALNUM + "_-")),
    ("anthropic_key", 'export X="{}"', fake("sk" + "-ant-api03-", 90, ALNUM + "-_")),
    ("google_api_key", "url?key={}&q=1", fake("AI" + "za", 35)),
    ("github_token", "token {} used", fake("gh" + "p_", 36)),
    ("github_token", "token {} used", fake("gh" + "o_", 36)),
    ("github_token", "token {} used", fake("gh" + "s_", 36)),
    ("github_token", "pat={}", fake("github" + "_pat_", 82, ALNUM + "_")),
    ("slack_token", "SLACK {}", "xox" + "b-" + "123456789012-1234567890123-" + ALNUM[:24]),
    ("slack_token", "SLACK {}", "xox" + "p-" + "1234567890-" + ALNUM[:20]),
    ("huggingface_token", "login {}", fake("h" + "f_", 34)),
    ("stripe_key", "stripe {}", fake("sk" + "_live_", 24)),
    ("aws_access_key_id", "id: {}", "AK" + "IA" + "IOSFODNN7EXAMPLE"),
    ("aws_access_key_id", "id: {}", "AS" + "IA" + "IOSFODNN7EXAMPLE"),
    ("aws_secret_access_key", "aws_secret_access_key = {}", AWS_SECRET),
    ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY={}\n", AWS_SECRET),
    ("aws_secret_access_key", '{{"SecretAccessKey": "{}"}}', AWS_SECRET),
    ("bearer_token", "Authorization: Bearer {}", "abcdefghijklmnop"),
    ("bearer_token", "curl -H 'authorization: bearer {}'", "eyJhbGciOi.eyJzdWIiOjE.sig-_x9"),
    ("bearer_token", "sent bearer {} upstream", "tok_9f8e7d6c5b4a3210"),
    ("basic_auth", "Authorization: Basic {}", base64.b64encode(b"user:pa55word").decode()),
    ("private_key", "key:\n{}\ndone", PEM),
    ("private_key", '{{"private_key": "{}", "client_email": "x"}}', PEM.replace("\n", "\\n")),
    ("jwt", "sent {} to the api", JWT),
    ("url_password", "postgres://app:{}@db:5432/prod", "s3cr3t-pa55"),
    ("url_password", "redis://:{}@cache:6379/0", "cache-pass-1"),
    ("gitlab_token", "GL {}", fake("gl" + "pat-", 20)),
    ("npm_token", "//registry.example/:_authToken={}", fake("np" + "m_", 36)),
    ("netrc_password", "machine api.example.com login bob password {}", "hunter2hunter2x"),
    ("netrc_password", "machine api.example.com\n  login bob\n  password {}\n", "hunter2hunter2x"),
    ("netrc_password", "  password {}", "hunter2hunter2x"),
    ("secret_value", '{{"client_secret": "{}"}}', "GOCSPX-abcdefgh12345"),
    ("secret_value", "DB_PASSWORD={}\n", "correct-horse-battery"),
    ("secret_value", "password: '{}'", "pa$$w0rd&more"),
    ("secret_value", 'cmd=\\"export API_KEY={}\\"', "k3y-v4lue-abcdef"),
]


@pytest.mark.parametrize(("kind", "template", "secret"), CASES)
def test_each_kind_is_redacted_and_counted(kind, template, secret):
    redactor = Redactor()
    text = template.format(secret)
    result, n = redactor.redact(text)
    assert n == 1 and redactor.count == 1
    assert secret not in result
    assert result == template.format(f"[REDACTED:{kind}]")


def test_every_shape_kind_is_covered():
    assert {kind for kind, _, _ in SHAPES} | {LABELLED_KIND} == {kind for kind, _, _ in CASES}


ORDINARY = [
    "task: add a test for the parser; the secret sauce is patience",
    hashlib.sha256(b"hello").hexdigest(),
    "commit 4e16b5d0c1f2a3b4c5d6e7f8091a2b3c4d5e6f70 (HEAD -> main)",
    str(uuid.UUID(int=0x0123456789ABCDEF0123456789ABCDEF)),
    base64.b64encode(b"just some ordinary bytes of a normal file, nothing else" * 3).decode(),
    "pip install scikit-learn; import sklearn; sk-learn-compatible-estimator-wrapper-class",
    "risk-assessment-framework-for-the-asia-pacific-region, ASIA, Asia",
    "the bearer of this letter; Bearer authentication is described in RFC 6750",
    "high through right light ghost; hf_model_name_or_path_for_tokenizer",
    "aws_secret_access_key = <your secret here>",
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
    '{"type":"turn.completed","usage":{"input_tokens":6040,"output_tokens":129}}',
    'password = os.environ["DB_PASSWORD"]; token = get_token(user)',
    "def check(password: str) -> bool: return verify(password, secret_key=load_key())",
    "max_tokens=100000, input_tokens: 1234, token_count = 12345678",
    "see https://github.com/org/repo and ssh://git@github.com/org/repo.git, http://localhost:8080/a?b=c",
    '{"key": "user_settings", "value": "dark_mode_enabled"}',
    "env: API_TOKEN: ${{ secrets.API_TOKEN }}; export PGPASSWORD=$DB_PASS",
    "please login with your password reset link",
    '{"passed": 3, "failed": 1, "passenger_name": "Johnathan Smith", "tokenizer": "cl100k_base"}',
    "",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_not_redacted(text):
    redactor = Redactor.from_env({"API_KEY": "1", "HOME": "/home/someone/secretive"})
    assert redactor.redact(text) == (text, 0)
    assert redactor.count == 0


def test_env_values_of_secret_names_are_redacted_longest_first():
    env = {
        "OPENAI_API_KEY": "opaque-value-123",
        "MY_TOKEN": "opaque-value-123-and-more",
        "DB_PASSWORD": "hunter2hunter2",
        "SERVICE_CREDENTIALS": "c0rrect-h0rse",
        "client_secret": "lowercase-name-value",
        "SHORT_KEY": "1234567",
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "EDITOR": "vim-but-long-enough",
    }
    redactor = Redactor.from_env(env)
    text = (
        "a=opaque-value-123-and-more b=opaque-value-123 c=hunter2hunter2 hunter2hunter2 "
        "d=c0rrect-h0rse e=lowercase-name-value f=1234567 g=/usr/bin:/bin:/usr/local/bin "
        "h=vim-but-long-enough"
    )
    result, n = redactor.redact(text)
    assert n == 6 and redactor.count == 6
    assert result == (
        "a=[REDACTED:env:MY_TOKEN] b=[REDACTED:env:OPENAI_API_KEY] "
        "c=[REDACTED:env:DB_PASSWORD] [REDACTED:env:DB_PASSWORD] "
        "d=[REDACTED:env:SERVICE_CREDENTIALS] e=[REDACTED:env:client_secret] f=1234567 "
        "g=/usr/bin:/bin:/usr/local/bin h=vim-but-long-enough"
    )


def test_env_value_wins_over_shape_and_is_counted_once():
    key = fake("sk" + "-", 48)
    redactor = Redactor.from_env({"OPENAI_API_KEY": key})
    assert redactor.redact(f"Authorization: Bearer {key}") == (
        "Authorization: Bearer [REDACTED:env:OPENAI_API_KEY]",
        1,
    )


def test_is_secret_name():
    assert all(map(is_secret_name, ["GITHUB_TOKEN", "aws_secret", "PGPASSWORD", "API_KEY", "DB_PASS",
                                    "GH_AUTH", "SENTRY_DSN", "SSH_PASSPHRASE", "GPG_PRIVATE"]))
    assert not any(map(is_secret_name, ["HOME", "PATH", "USER", "TERM", "PWD", "OLDPWD",
                                        "GIT_AUTHOR_NAME", "PASSENGER_COUNT"]))


def test_counts_accumulate_over_calls_and_several_secrets_per_text():
    redactor = Redactor()
    gh, hf = fake("gh" + "p_", 36), fake("h" + "f_", 34)
    result, n = redactor.redact(f"{gh} {hf} {gh}")
    assert n == 3
    assert result == "[REDACTED:github_token] [REDACTED:huggingface_token] [REDACTED:github_token]"
    assert redactor.redact("nothing here") == ("nothing here", 0)
    redactor.redact(hf)
    assert redactor.count == 4


def test_redacted_output_is_stable_when_redacted_again():
    redactor = Redactor.from_env({"AWS_SECRET_ACCESS_KEY": AWS_SECRET})
    once, _ = redactor.redact(f"AWS_SECRET_ACCESS_KEY={AWS_SECRET} bearer tok_9f8e7d6c5b4a3210")
    assert redactor.redact(once) == (once, 0)


def test_unterminated_private_key_is_redacted_to_the_end():
    redactor = Redactor()
    text = "out: -----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    assert redactor.redact(text) == ("out: [REDACTED:private_key]", 1)


def test_redact_line_follows_a_private_key_over_lines():
    redactor = Redactor()
    out = [redactor.redact_line(line) for line in ["before", *PEM.split("\n"), "after"]]
    assert out == [("before", 0), ("[REDACTED:private_key]", 1)] + [
        ("[REDACTED:private_key]", 0)
    ] * 4 + [("after", 0)]
    assert redactor.count == 1


def test_redact_line_stops_following_at_a_non_key_line():
    redactor = Redactor()
    redactor.redact_line("-----BEGIN EC " + "PRIVATE KEY-----")
    assert redactor.redact_line("Traceback (most recent call last):") == (
        "Traceback (most recent call last):",
        0,
    )
    assert redactor.redact_line("QUJD") == ("QUJD", 0)


def test_redact_obj_copies_nested_structures():
    key = fake("sk" + "-", 48)
    redactor = Redactor.from_env({"DB_PASSWORD": "hunter2hunter2"})
    obj = {
        "type": "item.completed",
        "item": {
            "aggregated_output": f"OPENAI_API_KEY={key}\n",
            "args": ["--password", "hunter2hunter2", 3, None, True],
            "pair": ("hunter2hunter2", 1.5),
        },
        "hunter2hunter2": 0,
    }
    before = json.dumps(obj)
    result = redactor.redact_obj(obj)
    assert json.dumps(obj) == before  # the input is not modified
    assert result == {
        "type": "item.completed",
        "item": {
            "aggregated_output": "OPENAI_API_KEY=[REDACTED:openai_key]\n",
            "args": ["--password", "[REDACTED:env:DB_PASSWORD]", 3, None, True],
            "pair": ("[REDACTED:env:DB_PASSWORD]", 1.5),
        },
        "[REDACTED:env:DB_PASSWORD]": 0,
    }
    assert redactor.count == 4


def test_a_dict_value_labelled_secret_by_its_key_is_redacted_as_in_json_text():
    """`agtrace new --tag password=…`, `agtrace tag RUN AWS_SECRET_ACCESS_KEY=…` and a capture's
    config or tool arguments kept such values: each string was redacted alone, without the key
    that labels it, while the same dict in a JSON line `append` reads was redacted."""
    redactor = Redactor.from_env({})
    obj = {"password": "hunter2hunter2", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
           "api_key": "abc123def456ghi", "key": "src/app.py", "max_tokens": "4096", "plain": "value",
           "nested": {"client_secret": "s3cr3t-v4lu3-xyz"}}
    result = redactor.redact_obj(obj)
    assert result == {
        "password": f"[REDACTED:{LABELLED_KIND}]", "AWS_SECRET_ACCESS_KEY": "[REDACTED:aws_secret_access_key]",
        "api_key": f"[REDACTED:{LABELLED_KIND}]", "key": "src/app.py", "max_tokens": "4096", "plain": "value",
        "nested": {"client_secret": f"[REDACTED:{LABELLED_KIND}]"}}
    assert redactor.count == 4
    assert json.loads(redactor.redact_json(json.dumps(obj).encode())[0]) == result  # as append sees it


def test_tags_labelled_secret_by_their_key_are_redacted_by_new_and_tag(tmp_path):
    from .conftest import run_agtrace

    store = tmp_path / "s"
    run = run_agtrace(["new", "--tag", "password=hunter2hunter2", "--tag", "who=me"], store,
                      check=True).stdout.decode().strip()
    run_agtrace(["tag", run, "api_key=abc123def456ghi", "plain=value"], store, check=True)
    tags = json.loads(run_agtrace(["show", run, "--json"], store, check=True).stdout)["tags"]
    assert tags == {"password": f"[REDACTED:{LABELLED_KIND}]", "who": "me",
                    "api_key": f"[REDACTED:{LABELLED_KIND}]", "plain": "value"}
    for path in (store / "runs" / run).rglob("*"):
        if path.is_file():
            import zstandard

            data = path.read_bytes()
            try:
                data += zstandard.ZstdDecompressor().decompressobj().decompress(data[data.find(b"\x28\xb5\x2f\xfd"):])
            except zstandard.ZstdError:
                pass
            assert b"hunter2hunter2" not in data and b"abc123def456ghi" not in data, path


def test_secret_inside_json_encoded_line_is_redacted():
    key = fake("gh" + "p_", 36)
    line = json.dumps({"item": {"aggregated_output": f"remote: https://x:{key}@github.com\n"}})
    result, n = Redactor().redact(line)
    assert n == 1 and key not in result
    assert json.loads(result)["item"]["aggregated_output"].startswith("remote: https://x:[RED")


@pytest.mark.parametrize("lead", [b"", b"x", b"xy", b"apiVersion: v1\n"])
def test_an_env_secret_base64_encoded_is_redacted_at_any_alignment(lead):
    """`echo "$DEPLOY_TOKEN" | base64`, `kubectl get secret -o yaml`: the encoded value is found
    whatever bytes come before it in the encoded stream, in both base64 alphabets."""
    value = "Vq7Rk2Lm9Xz4" + "Wt6Yb1Nc/+?>"
    redactor = Redactor.from_env({"DEPLOY_TOKEN": value})
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(lead + value.encode() + b"\n").decode()
        text, n = redactor.redact(f"data:\n  token: {encoded}\n")
        assert n == 1 and "[REDACTED:env:DEPLOY_TOKEN]" in text, text
        rest = text.split("token: ", 1)[1].replace("[REDACTED:env:DEPLOY_TOKEN]", "")
        assert len(rest.strip()) <= len(encode(lead)) + 4 + 8  # the lead, and the groups it shares with the value or the newline
    assert redactor.redact(base64.b64encode(b"an ordinary value, not the token").decode())[1] == 0


def _no_piece_left(text: str, value: str) -> bool:
    """No :data:`CHUNK` characters of a base64 form of ``value`` in ``text`` once its lines are joined."""
    joined = text.replace("\r", "").replace("\n", "").replace("\\n", "")
    return not any(chunk in joined for form in base64_forms(value) for chunk, _ in base64_chunks(form))


WRAPPERS = {"base64": ["base64"], "base64 -w 64": ["base64", "-w", "64"], "openssl base64": ["openssl", "base64"]}


@pytest.mark.parametrize("tool", WRAPPERS)
@pytest.mark.parametrize("lead", ["", "x", "xy", "export ANTHROPIC_API_KEY="])
def test_an_env_secret_base64_wrapped_over_lines_is_redacted(tool, lead):
    """`echo "$ANTHROPIC_API_KEY" | base64` prints a 108-character key over two or three lines
    (GNU base64 wraps at 76 columns, OpenSSL at 64): each piece of it is redacted, in the whole
    output, line by line (a captured stream) and in JSON lines (`agtrace append`, screened)."""
    value = "sk-ant-api03-" + "Zq9xW2vB7nM4kL1p" * 5 + "Tr8Yu3Io5Pa7Sd9Fg2Hj4Kl6ZzAA"
    redactor = Redactor.from_env({"ANTHROPIC_API_KEY": value})
    printed = subprocess.run(WRAPPERS[tool], input=(lead + value + "\n").encode(), capture_output=True,
                             check=True).stdout.decode()
    assert len(printed.splitlines()) >= 2 and base64.b64decode(printed) == (lead + value + "\n").encode()
    whole, n = redactor.redact(printed)
    assert n == 1 and _no_piece_left(whole, value), whole  # one secret, over two or three lines
    kept = base64.b64encode(lead.encode()).decode()[: 4 * (len(lead) // 3)]
    assert whole.replace("\n", "").startswith(kept)  # the lead's own characters stay
    lines = [redactor.redact_line(line, "stdout")[0] for line in printed.splitlines()]
    assert _no_piece_left("\n".join(lines), value), lines
    events = [json.dumps({"kind": "line_logged", "stream": "stdout", "text": line}).encode()
              for line in printed.splitlines()]
    out, counts = Redactor.from_env({"ANTHROPIC_API_KEY": value}).redact_json_lines(
        [b'{"kind": "note", "text": "unrelated"}', *events])
    assert 0 not in counts and set(counts) == set(range(1, len(out))) - {
        i for i, line in enumerate(printed.splitlines(), 1) if len(line) < 8}
    assert _no_piece_left("\n".join(o.decode() for o in out), value)
    assert redactor.redact(base64.encodebytes(b"an ordinary value " * 9).decode())[1] == 0


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=12, max_size=90),
       st.binary(max_size=7), st.integers(2, 30), st.booleans())
def test_a_base64_form_broken_at_any_width_loses_every_piece_of_a_chunk_or_more(value, lead, groups, urlsafe):
    """A value of 12 characters or more, base64-encoded after any bytes and wrapped at any width
    that is a multiple of 4 (8 to 120 columns), in either alphabet, in one text: it is one
    redaction, and no character of its form is left."""
    redactor = Redactor.from_env({"SOME_TOKEN": value})
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    encoded = encode(lead + value.encode() + b"\n").decode()
    width = 4 * groups
    text = "\n".join(encoded[i : i + width] for i in range(0, len(encoded), width)) + "\n"
    out, n = redactor.redact(text)
    assert n == 1 and _no_piece_left(out, value), out
    # every character of the form is gone, however short its piece on a line, and what stays
    # is the lead's and the end's (the lead's too may go where it repeats the value: 000000…)
    parts = [part.replace("\n", "") for part in out.split("[REDACTED:env:SOME_TOKEN]")]
    start = 4 * -(-len(lead) // 3)
    end = 4 * ((len(lead) + len(value.encode())) // 3)
    assert not "".join(parts[1:-1]) and encoded.startswith(parts[0]) and encoded.endswith(parts[-1])
    assert len(parts[0]) <= start and len(encoded) - len(parts[-1]) >= end, out
    # line by line (a captured stream): the same, but for a piece under a chunk that ends the
    # first line the form is on (that line is redacted before the next is read)
    stream = Redactor.from_env({"SOME_TOKEN": value})
    lines = [stream.redact_line(line, "stdout")[0] for line in text.splitlines()]
    parts = [part.replace("\n", "") for part in "\n".join(lines).split("[REDACTED:env:SOME_TOKEN]")]
    assert not "".join(parts[1:-1]) and encoded.startswith(parts[0]) and encoded.endswith(parts[-1])
    assert len(parts[0]) < start + CHUNK and len(encoded) - len(parts[-1]) >= end, lines


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=12, max_size=90),
       st.binary(max_size=7), st.data())
def test_a_base64_form_cut_anywhere_is_redacted_up_to_the_cut(value, lead, data):
    """An output cut short (a tool's limit, a `head -c`) in the middle of an encoded value, at
    its end or at its start: every character of the value's form up to the cut is redacted, and
    what is kept is the rest of the input (no more than the lead, unless the lead's characters
    are also the form's: a value like ``000000000000`` repeats itself)."""
    redactor = Redactor.from_env({"SOME_TOKEN": value})
    encoded = base64.b64encode(lead + value.encode() + b"\n").decode()
    start = 4 * -(-len(lead) // 3)  # where the form starts: the first group of the value's bytes alone
    end = 4 * ((len(lead) + len(value.encode())) // 3)
    cut = data.draw(st.integers(start + 8, end))
    out, _ = redactor.redact(encoded[:cut])
    head, placeholder, tail = out.partition("[REDACTED:env:SOME_TOKEN]")
    assert placeholder and not tail and encoded[:start].startswith(head), out
    begin = data.draw(st.integers(start, end - 8))
    out, _ = redactor.redact(encoded[begin:])
    head, placeholder, tail = out.partition("[REDACTED:env:SOME_TOKEN]")
    assert placeholder and not head and encoded[end:].endswith(tail), out


def test_a_secret_found_by_its_shape_is_redacted_wherever_it_reappears():
    redactor = Redactor()
    assert redactor.redact("DB_PASSWORD=correct-horse-battery")[0] == "DB_PASSWORD=[REDACTED:secret_value]"
    assert redactor.redact("connecting with correct-horse-battery now") == (
        "connecting with [REDACTED:secret_value] now", 1)
    assert redactor.redact("pw: s3cr3t-pa55")[0] == "pw: s3cr3t-pa55"  # not yet known
    redactor.redact("postgres://app:s3cr3t-pa55@db/x")
    assert redactor.redact("pw: s3cr3t-pa55")[0] == "pw: [REDACTED:url_password]"


def test_a_text_cut_in_the_middle_of_a_known_secret_loses_the_cut_secret():
    redactor = Redactor.from_env({"MY_TOKEN": "opaque-value-123-and-more"})
    title = "cat secrets.txt: token is opaque-value-12…"
    assert redactor.redact(title) == ("cat secrets.txt: token is [REDACTED:env:MY_TOKEN]…", 1)
    assert redactor.redact("an ordinary title, cut…") == ("an ordinary title, cut…", 0)


def test_redact_line_keeps_one_private_key_state_per_stream():
    redactor = Redactor()
    lines = PEM.split("\n")
    out = [redactor.redact_line(lines[0], "stdout"), redactor.redact_line("a warning", "stderr")]
    out += [redactor.redact_line(line, "stdout") for line in lines[1:]]
    assert out[1] == ("a warning", 0)
    assert all(text == "[REDACTED:private_key]" for text, _ in out[:1] + out[2:])


def test_redact_bytes_keeps_every_other_byte():
    key = fake("gh" + "p_", 36)
    data = b"\xff\xfe before " + key.encode() + b" after \x80"
    assert Redactor().redact_bytes(data) == (b"\xff\xfe before [REDACTED:github_token] after \x80", 1)
    assert Redactor().redact_bytes(b"\xff plain") == (b"\xff plain", 0)


def test_redact_event_covers_nested_structs_bytes_and_records_raw_redactions():
    from agtrace.eventlog import RawRecorded, TestCase, TestsRan

    key = fake("gh" + "p_", 36)
    redactor = Redactor()
    tests = TestsRan(suite="unit", tests=[TestCase(name="t", outcome="failed", message=f"bad token {key}")])
    event, n = redactor.redact_event(tests)
    assert n == 1 and event.tests[0].message == "bad token [REDACTED:github_token]"
    raw = RawRecorded(source="x", text=f'{{"out": "{key}"}}', data=key.encode(), redactions=1)
    event, n = redactor.redact_event(raw)
    assert n == 2 and event.redactions == 3 and key not in event.text and key.encode() not in event.data
    same = RawRecorded(source="x", text="nothing")
    assert redactor.redact_event(same) == (same, 0)


def test_redact_json_redacts_a_json_line_once_and_its_escaped_strings():
    key = fake("gh" + "p_", 36)
    redactor = Redactor.from_env({"DB_PASSWORD": 'quote"and\\slash'})
    line = json.dumps({"kind": "message_added", "role": "user",
                       "text": f'pw quote"and\\slash key {key} caf\u00e9 \u2603'}).encode()
    out, n = redactor.redact_json(line)
    assert n == 2 and key.encode() not in out and b"and\\\\slash" not in out
    assert json.loads(out)["text"] == "pw [REDACTED:env:DB_PASSWORD] key [REDACTED:github_token] caf\u00e9 \u2603"
    plain = b'{"kind":"heartbeat_sent"}'
    assert redactor.redact_json(plain) == (plain, 0)


def test_values_of_secret_named_flags_are_redacted_in_text_and_in_argv():
    redactor = Redactor()
    assert redactor.redact("deploy --api-key k3y-v4lue-abcdef --verbose")[0] == (
        "deploy --api-key [REDACTED:secret_value] --verbose")
    assert redactor.redact("the password is not a flag value")[0] == "the password is not a flag value"
    argv = redactor.redact_obj(["tool", "--password", "hunter2hunter2x", "--out", "dir", "--token", "-v"])
    assert argv == ["tool", "--password", "[REDACTED:secret_value]", "--out", "dir", "--token", "-v"]
    assert redactor.redact("echo hunter2hunter2x")[0] == "echo [REDACTED:secret_value]"


def test_import_redacts_each_raw_record_once(tmp_path):
    """Issue (performance): `import` redacted the inline text of each raw record twice, once in
    `RunSink.text` (as JSON, string by string) and again over the whole event on append. Now the
    raw text passes through the redactor once; its secrets are still replaced and counted. The
    source is claude-code/daaain_representative_messages.jsonl (daaain/claude-code-log, see
    fixtures/SOURCES.md) with a known secret added to its first message."""
    from agtrace.capture import IMPORTERS
    from agtrace.capture.importers import ImportContext
    from agtrace.eventlog import RawRecorded, Store
    from agtrace.eventlog.reader import read_stream

    from .conftest import FIXTURES

    secret = "opaque-value-123-and-more-of-it"
    lines = (FIXTURES / "claude-code/daaain_representative_messages.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["message"]["content"][0]["text"] += f" my token is {secret}"
    lines[0] = json.dumps(first)
    src = tmp_path / "session.jsonl"
    src.write_text("\n".join(lines) + "\n")

    class Counting(Redactor):
        """The real redactor, noting each text it is given."""

        texts: list[str] = []

        def redact(self, text):
            self.texts.append(text)
            return super().redact(text)

    redactor = Counting.from_env({"MY_TOKEN": secret})
    with Store(tmp_path / "store") as store:
        ctx = ImportContext(store, redactor=redactor)
        IMPORTERS["claude-session"].read(src, ctx)
        (sink,) = ctx.sinks
        sink.close()
        raw = [r.event for r in read_stream(sink.dir / "events") if isinstance(r.event, RawRecorded)]
        sink.abandon()
    assert [e.text for e in raw[1:]] == lines[1:]
    assert secret not in raw[0].text and "[REDACTED" in raw[0].text and raw[0].redactions == 1
    given = Counting.texts
    assert [given.count(line) for line in lines] == [1] * len(lines)  # each raw line once
    assert given.count(raw[0].text) == 0  # and not its redacted text again


def test_redactors_of_the_same_secrets_share_their_known_values():
    """An import makes a redactor per source; the values, forms and chunks of the same secrets
    (tens of thousands of chunks for hundreds of long ones) are built once per process, and a
    value one redactor learns stays its own."""
    env = {"A_TOKEN": "tok-" + hashlib.sha256(b"a").hexdigest() + hashlib.sha256(b"b").hexdigest(), "B_SECRET": "short-secret-1"}
    first, second = Redactor.from_env(env), Redactor.from_env(dict(env))
    assert first._kv is second._kv and len(first._kv.wrapped.chunks) > 100
    assert first.redact("password=hunter2-is-long")[1] == 1 and first.redact("hunter2-is-long")[1] == 1
    assert second.redact("hunter2-is-long") == ("hunter2-is-long", 0)
    assert Redactor.from_env({"B_SECRET": "short-secret-1", **env})._kv is not first._kv  # the first name is reported


@pytest.mark.parametrize("encode", [
    lambda v: urllib.parse.quote(v, safe=""), lambda v: urllib.parse.quote_plus(v),
    lambda v: urllib.parse.quote(v, safe="!'()*"),  # encodeURIComponent's
    lambda v: re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), urllib.parse.quote(v, safe=""))])
def test_an_env_secret_percent_encoded_in_a_url_is_redacted(encode):
    """`curl "https://api.example/?secret=$AWS_SECRET_ACCESS_KEY"` with a key holding `/` and `+`
    prints it percent-encoded (a request log, an error naming the URL)."""
    value = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY!EXAMPLE(KEY)"
    redactor = Redactor.from_env({"AWS_SECRET_ACCESS_KEY": value})
    text, n = redactor.redact(f"GET https://api.example/v1?sig={encode(value)}&page=2 -> 403")
    assert n == 1 and text == "GET https://api.example/v1?sig=[REDACTED:env:AWS_SECRET_ACCESS_KEY]&page=2 -> 403"
    assert credential_content("notes/url.txt", f"endpoint = https://x/?k={encode(value)}\n".encode(), (value,))
