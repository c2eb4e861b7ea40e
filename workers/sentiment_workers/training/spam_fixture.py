"""A synthetic SMS spam/ham corpus, generated deterministically (the SMS Spam Collection is not obtainable
offline). Its data card is in docs/training.md.

    python -m sentiment_workers.training.spam_fixture OUT.csv [--size 2000] [--seed 7]

Messages are filled from templates written after the styles of real SMS: ham is chat between friends,
family and colleagues (plans, logistics, small talk, abbreviations, typos); spam is prize, loan, ringtone,
subscription and phishing bait (shouting, money amounts, short codes, URLs). About 13% is spam, the share
in the SMS Spam Collection. Some ham uses spam words ("free", "win", "call") and some spam is written
casually, so the task is not trivially separable; and 1% of the labels are flipped, as annotation errors
are in real collections.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

SPAM_SHARE = 0.134
LABEL_NOISE = 0.01
_OPENERS = ["", "", "", "hey ", "hi ", "oi ", "Hiya! ", "Dear customer, ", "FYI ", "ok so "]
_CLOSERS = ["", "", "", " x", " xx", " :)", " lol", " thanks", " !!", " - sent from my phone"]
TEXT_COLUMN = "text"
LABEL_COLUMN = "label"

_NAMES = ["Sam", "Jo", "Alex", "Priya", "Tom", "Mia", "Dan", "Lucy", "Raj", "Em", "Ben", "Kat"]
_PLACES = [
    "the pub",
    "town",
    "uni",
    "the gym",
    "Tesco",
    "the station",
    "work",
    "mum's",
    "the library",
    "the cinema",
]
_TIMES = ["7", "half 6", "8ish", "tonight", "tmrw", "after work", "2pm", "lunch", "later", "in 10 mins"]
_THINGS = ["keys", "charger", "jacket", "notes", "wallet", "umbrella", "bag", "book", "headphones", "tickets"]
_HAM = [
    "Hey {name}, are we still on for {place} at {time}?",
    "im at {place}, where r u",
    "Can you grab my {thing} from {place}? I left them there",
    "Running late, be there {time}. Sorry!!",
    "Did u get my message about {time}? Call me when u can",
    "{name} said the party is at {place} {time}, you coming?",
    "ok see you at {place} {time} x",
    "Thanks for today, had a lovely time :)",
    "Haha yeah that was mad. Free {time}? fancy {place}?",
    "Mum says dinner at {time}, dont be late",
    "Have you seen my {thing}? cant find them anywhere",
    "Sorry I missed your call, was at {place}. Call you back {time}",
    "Good luck with the exam tomorrow {name}! You'll win this",
    "Lol no way. Tell {name} I said hi",
    "Meeting moved to {time}, room 3. Bring the {thing}",
    "U still need a lift to {place}? I can pick you up {time}",
    "Just got home. Long day. Speak {time}?",
    "Happy birthday {name}!! Hope you have an amazing day x",
    "Can't talk now, in a meeting. Text me",
    "Is {place} open on sundays? want to go {time}",
    "The {thing} is on the kitchen table",
    "We won the match!! {name} scored twice",
    "I'll call you {time} about the {thing}, ok?",
    "yeah fine, {time} works for me",
    "Traffic is awful, stuck near {place}. Start without me",
    # legitimate service messages: money, codes and links, but ham
    "Your Tesco order will be delivered {time}. Reply STOP to opt out of delivery texts",
    "Your verification code is {num}. Do not share it with anyone",
    "Reminder: your appointment at the dentist is {time}. Call 0800{num} to change it",
    "You have won the office raffle {name}! Collect your prize from reception",
    "Free tickets to {place} {time} if anyone wants them, text me",
]
_PRIZES = [
    "£1000 cash",
    "a FREE holiday",
    "a brand new iPhone",
    "£500 Tesco voucher",
    "2 FREE cinema tickets",
    "a £250 gift card",
    "£2000 prize",
    "a FREE camcorder",
]
_CODES = ["80082", "87121", "69669", "85233", "81010", "62468"]
_SPAM = [
    "WINNER!! You have been selected to receive {prize}. Call 09061{num} now to claim. T&Cs apply",
    "URGENT! Your mobile number has won {prize}! To claim txt CLAIM to {code} before {day}",
    "Congratulations ur awarded {prize}. Call 0800{num} from landline. Valid 12hrs only",
    "FREE entry in 2 a weekly comp to win {prize}. Text WIN to {code} to receive entry question. 18+",
    "You have 1 new voicemail. Please call 09058{num} to listen. 150p/min",
    "Your account has been suspended. Verify your details at http://secure-{site}.co/login now",
    "Get the latest ringtones FREE! Reply TONES to {code}. Subscription £3/wk, send STOP to end",
    "Need cash fast? Loans up to £5000, no credit checks. Reply YES or call 0800{num}",
    "PRIVATE! Your 2024 account statement shows {prize} unclaimed. Call 09066{num}. Identifier code {num}",
    "Hot singles in your area want to chat! Text DATE to {code}. £1.50/msg",
    "u have won {prize} in our prize draw! ring 09050{num} to claim b4 {day}",
    "Last chance to claim your {prize}. Go to http://{site}-rewards.com and enter code {num}",
    "Your parcel could not be delivered. Reschedule delivery at http://{site}-parcel.info fee £1.99",
    "IMPORTANT: Your bank card has been blocked. Call 0844{num} immediately to unblock",
    # casual spam: written like a friend
    "hey its {name}, long time! saw ur pics, text me back on {code} x",
    "Hi {name} here, are you free {time}? I have a great offer for you, call me 0770{num}",
    "did you get my message? u still havent claimed your {prize}, reply YES",
]
_SITES = ["bnk", "royalmail", "hmrc", "paypa1", "nat-west", "ee-billing"]
_DAYS = ["Friday", "midnight", "26/03", "the weekend", "tomorrow"]
_TYPOS = {"you": "u", "are": "r", "to": "2", "for": "4", "tomorrow": "tmrw", "please": "pls"}


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        name=rng.choice(_NAMES),
        place=rng.choice(_PLACES),
        time=rng.choice(_TIMES),
        thing=rng.choice(_THINGS),
        prize=rng.choice(_PRIZES),
        code=rng.choice(_CODES),
        num=rng.randrange(100000, 999999),
        site=rng.choice(_SITES),
        day=rng.choice(_DAYS),
    )


def _roughen(text: str, rng: random.Random) -> str:
    """Texting style: some words abbreviated, sometimes lower case, sometimes no final punctuation."""
    words = [_TYPOS.get(w.lower(), w) if rng.random() < 0.3 else w for w in text.split(" ")]
    text = " ".join(words)
    if rng.random() < 0.25:
        text = text.lower()
    if rng.random() < 0.2:
        text = text.rstrip(".!?")
    return text


def generate(size: int = 2000, seed: int = 7) -> list[tuple[str, str]]:
    """``size`` (text, label) pairs, label ``spam`` or ``ham``; the same list for the same arguments."""
    rng = random.Random(seed)  # noqa: S311 - seeded for reproducibility, not security
    rows = []
    for _ in range(size):
        label = "spam" if rng.random() < SPAM_SHARE else "ham"
        template = rng.choice(_SPAM if label == "spam" else _HAM)
        text = rng.choice(_OPENERS) + _roughen(_fill(template, rng), rng) + rng.choice(_CLOSERS)
        if rng.random() < LABEL_NOISE:
            label = "ham" if label == "spam" else "spam"
        rows.append((text, label))
    return rows


def write_csv(path: Path, size: int = 2000, seed: int = 7) -> Path:
    """The corpus as CSV with a header ``text,label`` (UTF-8, ``\\n`` line ends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([TEXT_COLUMN, LABEL_COLUMN])
        writer.writerows(generate(size, seed))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic SMS spam/ham corpus as CSV.")
    parser.add_argument("output", type=Path)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    print(write_csv(args.output, args.size, args.seed))


if __name__ == "__main__":
    main()
