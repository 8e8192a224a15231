"""The consumer's processing core without I/O: decoding, per-device state, suppression."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgstream.processing import InputMessage, StreamProcessor
from ecgstream.records import load_record
from ecgstream.stream import PreprocessConfig
from ecgstream.wire import encode_chunk, make_chunk
from tests.conftest import record_chunks


@pytest.fixture(scope="module")
def chunks(mitdb_dir: Path) -> list[bytes]:
    return record_chunks(mitdb_dir, "119", 60)


def _messages(chunks: list[bytes], replay_until: int = 0) -> list[InputMessage]:
    return [
        InputMessage(0, i, b"bed-1", value, 0, replay=i < replay_until)
        for i, value in enumerate(chunks)
    ]


def _complete(processor: StreamProcessor, ingested) -> list:
    n = len(ingested.beats)
    proba = np.tile(np.array([[0.9, 0.05, 0.03, 0.02]], dtype=np.float32), (n, 1))
    beats, _ = processor.complete(ingested.beats, proba, ("N", "S", "V", "F"), "m", 0.0)
    return beats


def test_beats_carry_device_sample_time_and_rr(chunks: list[bytes]) -> None:
    processor = StreamProcessor(PreprocessConfig())
    beats = _complete(processor, processor.ingest(_messages(chunks)))
    assert len(beats) > 50
    assert [b.sample for b in beats] == sorted(b.sample for b in beats)
    assert beats[0].rr_prev_s is None and beats[1].rr_prev_s is not None
    assert beats[5].time_s == pytest.approx(1000.0 + beats[5].sample / 360.0)
    # a version-1 chunk's session is its device's time origin (1000 s)
    assert beats[5].beat_id == f"bed-1:t1000:{beats[5].sample}"
    assert {b.session for b in beats} == {"t1000"}


def test_a_redelivered_chunk_is_skipped(chunks: list[bytes]) -> None:
    processor = StreamProcessor(PreprocessConfig())
    first = processor.ingest(_messages(chunks[:30]))
    again = processor.ingest(_messages(chunks[20:30]))
    assert again.duplicates == 10 and again.chunks == 0 and again.beats == []
    assert first.chunks == 30


def test_replayed_messages_rebuild_state_but_emit_nothing(chunks: list[bytes]) -> None:
    whole = StreamProcessor(PreprocessConfig())
    expected = _complete(whole, whole.ingest(_messages(chunks)))
    rebuilt = StreamProcessor(PreprocessConfig())
    emitted = _complete(rebuilt, rebuilt.ingest(_messages(chunks, replay_until=30)))
    late = [b for b in expected if b.sample >= emitted[0].sample]
    assert [b.sample for b in emitted] == [b.sample for b in late]
    assert all(b.sample > 28 * 360 for b in emitted)


def test_a_gap_restarts_the_device(chunks: list[bytes]) -> None:
    processor = StreamProcessor(PreprocessConfig())
    processor.ingest(_messages(chunks[:20]))
    after_gap = processor.ingest(_messages(chunks[40:]))
    assert after_gap.chunks == 20
    assert all(b.sample >= 40 * 360 for b in after_gap.beats)


def test_bad_messages_become_dead_letters_and_the_rest_goes_on(chunks: list[bytes]) -> None:
    processor = StreamProcessor(PreprocessConfig())
    messages = [
        InputMessage(0, 0, b"bed-1", b"\xc1garbage", 0),
        InputMessage(0, 1, b"someone-else", chunks[0], 0),  # key is not the chunk's device
        *[InputMessage(0, 2 + i, b"bed-1", v, 0) for i, v in enumerate(chunks[:20])],
    ]
    ingested = processor.ingest(messages)
    assert [(d.offset, d.reason) for d in ingested.dead_letters] == [
        (0, "not_msgpack"),
        (1, "invalid_value"),
    ]
    assert ingested.chunks == 20 and ingested.beats


def test_a_consumer_that_takes_over_rebuilds_the_fault_and_emits_it_once(
    mitdb_dir: Path,
) -> None:
    """119's electrodes come off at 20 s (both leads at +5 mV). A new owner that replays the
    look-back (the first 30 chunks) emits no technical alarm again, and its beats after the
    replay carry the same signal verdicts as the first owner's."""
    record = load_record(mitdb_dir, "119")
    digital = record.digital[:, : 360 * 60].copy()
    rail = np.asarray(record.adc_baseline) + 5.0 * np.asarray(record.adc_gain)
    digital[:, 360 * 20 : 360 * 32] = np.round(rail).astype(digital.dtype)[:, None]
    chunks = [
        encode_chunk(
            make_chunk(
                device_id="bed-1", patient_id="pt-1", seq=i, first_sample=i * 360,
                start_time=1000.0 + i, fs=record.fs, lead_names=record.lead_names,
                adc_gain=record.adc_gain, adc_baseline=record.adc_baseline,
                samples=digital[:, i * 360 : (i + 1) * 360],
            )
        )
        for i in range(60)
    ]  # fmt: skip
    first = StreamProcessor(PreprocessConfig())
    ingested = first.ingest(_messages(chunks))
    assert [t.alarm.evidence["fault"] for t in ingested.technical] == ["lead_off"]
    expected = {b.sample: b.signal_fault for b in _complete(first, ingested)}
    assert "lead_off" in expected.values()

    taken_over = StreamProcessor(PreprocessConfig())
    replayed = taken_over.ingest(_messages(chunks, replay_until=30))
    assert replayed.technical == []  # raised by the first owner, not again
    assert [w.first_sample for w in replayed.windows] == [i * 360 for i in range(30, 60)]
    emitted = _complete(taken_over, replayed)
    assert emitted and all(expected[b.sample] == b.signal_fault for b in emitted)
    assert emitted[0].signal_fault == "lead_off"  # still inside the fault after the handover


def _sessions(beats: list) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for beat in beats:
        found.setdefault(beat.session, []).append(beat.sample)
    return found


@pytest.mark.parametrize("version", [1, 2])
def test_a_reboot_starts_a_new_session_instead_of_being_dropped(
    mitdb_dir: Path, version: int
) -> None:
    """A device rebooted 10 minutes later counts samples from 0 again: its chunks are a new
    session (new keys for every beat, alarm ids apart), not duplicates; a re-delivered chunk of
    either session is still a duplicate."""
    boot = [
        record_chunks(
            mitdb_dir,
            "119",
            30,
            start_time=1000.0 + 600 * n,
            session=None if version == 1 else f"boot{n}",
        )
        for n in range(2)
    ]
    whole = StreamProcessor(PreprocessConfig())
    alone = _complete(whole, whole.ingest(_messages(boot[1])))
    processor = StreamProcessor(PreprocessConfig())
    first = processor.ingest(_messages(boot[0]))
    second = processor.ingest(_messages(boot[1]))
    assert second.duplicates == 0 and second.chunks == 30 and second.sessions == 1
    beats = _complete(processor, first) + _complete(processor, second)
    names = ["t1000", "t1600"] if version == 1 else ["boot0", "boot1"]
    by_session = _sessions(beats)
    assert sorted(by_session) == names
    # the second boot gives exactly what a fresh processor gives for it (no state carried over)
    assert by_session[names[1]] == [b.sample for b in alone]
    assert len({b.beat_id for b in beats}) == len(beats)
    again = processor.ingest(_messages(boot[1][5:10]))
    assert again.duplicates == 5 and again.beats == []


def test_beats_of_an_ended_session_still_in_flight_are_judged_by_their_own_session(
    mitdb_dir: Path,
) -> None:
    """One batch holding the end of one boot and the start of the next: each beat goes back to
    its own session's monitor, and a late duplicate of the ended session is recognised."""
    old = record_chunks(mitdb_dir, "119", 20, session="boot0")
    new = record_chunks(mitdb_dir, "119", 20, start_time=5000.0, session="boot1")
    processor = StreamProcessor(PreprocessConfig())
    ingested = processor.ingest(_messages(old + new))
    beats = _complete(processor, ingested)
    assert sorted(_sessions(beats)) == ["boot0", "boot1"]
    assert len(beats) == len(ingested.beats)
    late = processor.ingest(_messages(old[10:12]))
    assert late.duplicates == 2 and late.beats == []


def test_a_device_cannot_publish_as_another(chunks: list[bytes]) -> None:
    """With a verifier, a chunk must carry the signature of the device it names: one signed with
    another device's key, or unsigned, is dead-lettered with its reason; a good one passes."""
    from ecgstream.identity import DeviceSigner, DeviceVerifier, device_key, sign

    secret = bytes(range(32))
    processor = StreamProcessor(PreprocessConfig(), verifier=DeviceVerifier(secret))
    own = DeviceSigner(secret)
    intruder_key = device_key(secret, "bed-2")  # bed-2 names bed-1 in its chunks
    messages = [
        InputMessage(0, 0, b"bed-1", chunks[0], 0, signature=sign(intruder_key, chunks[0])),
        InputMessage(0, 1, b"bed-1", chunks[0], 0),  # unsigned
        InputMessage(0, 2, b"bed-1", chunks[0], 0, signature=b"\x00" * 32),
        *[
            InputMessage(0, 3 + i, b"bed-1", v, 0, signature=own.headers("bed-1", v)[0][1])
            for i, v in enumerate(chunks[:20])
        ],
    ]
    out = processor.ingest(messages)
    assert [(d.offset, d.reason) for d in out.dead_letters] == [
        (0, "bad_signature"),
        (1, "unsigned"),
        (2, "bad_signature"),
    ]
    assert all("bed-1" not in d.detail for d in out.dead_letters)
    assert out.chunks == 20 and len(out.beats) > 15
    # the signature covers the whole message: one changed byte fails it
    tampered = bytearray(chunks[20])
    tampered[-1] ^= 1
    signature = own.headers("bed-1", chunks[20])[0][1]
    refused = processor.ingest(
        [InputMessage(0, 30, b"bed-1", bytes(tampered), 0, signature=signature)]
    )
    assert [d.reason for d in refused.dead_letters] == ["bad_signature"]
