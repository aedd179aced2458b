"""The pipe between a sending run and its workers (`deliver.channel`), over a
real socket pair: framing across reads, many messages per read, the end."""

from __future__ import annotations

import threading

import pytest

from newsletter.deliver.channel import Channel


def test_many_messages_arrive_in_few_reads_in_order():
    here, there = Channel.pair()

    def send() -> None:  # a thread: the socket holds only so many small writes
        for number in range(2000):
            there.send(("done", number, None))

    sender = threading.Thread(target=send)
    sender.start()
    got = []
    while len(got) < 2000:
        here.read(block=True)
        got += here.take(5000)
    sender.join()
    assert got == [("done", number, None) for number in range(2000)]
    assert here.take(10) == [] and not here.poll()


def test_one_read_takes_every_message_that_has_arrived():
    here, there = Channel.pair()
    for number in range(50):  # few enough for the socket's buffer
        there.send(("done", number, None))
    here.read(block=False)
    assert here.waiting == 50


def test_a_message_longer_than_one_read_is_put_together():
    here, there = Channel.pair()
    big = ("error", "x" * 1_000_000 + "한글", [1, 2, 3])
    sender = threading.Thread(target=there.send, args=(big,))
    sender.start()
    assert here.recv() == big
    sender.join()


def test_take_leaves_the_rest_waiting():
    here, there = Channel.pair()
    for number in range(5):
        there.send(("done", number, None))
    while here.waiting < 5:
        here.read(block=True)
    assert here.take(2) == [("done", 0, None), ("done", 1, None)]
    assert here.waiting == 3 and here.poll()
    assert [here.recv() for _ in range(3)] == [("done", n, None) for n in (2, 3, 4)]


def test_what_was_sent_before_the_other_end_closed_comes_first_then_eof():
    here, there = Channel.pair()
    there.send(("ready", None))
    there.send(("done", 1, None))
    there.close()
    assert here.recv() == ("ready", None)
    assert here.recv() == ("done", 1, None)
    assert here.poll()  # recv would not wait: it raises
    with pytest.raises(EOFError):
        here.recv()
    assert here.eof


def test_sending_to_a_closed_end_is_an_oserror():
    here, there = Channel.pair()
    here.close()
    with pytest.raises(OSError):
        for _ in range(100):  # the first write may still be buffered
            there.send(("done", 1, None))
