"""Three few-shot tasks of the paper's kinds, generated offline and deterministically, scored by exact match.

- ``date``: BIG-Bench Hard date understanding as that task is built (a templated date question, six dated options,
  the answer is the option's letter); one class per letter, as the paper counts BIG-Bench's six classes.
- ``topic``: classification with label words, in DBpedia's manner: a sentence names one thing, the answer is its
  category's word. The things of the train, validation and test splits are disjoint, so a test item is never a
  thing seen in training.
- ``emotion``: GoEmotions-like classification with long inputs: one sentence that carries the emotion, hidden among
  ``fillers`` neutral diary sentences (~14 tokens each). ``fillers`` sets the input length, which the mechanism
  study grows (section 4's trade-off).

Rows are alpaca records (instruction, input, output), the shape LLaMA-Factory reads. A split is drawn from its own
pool of things and its own random stream, so rows never depend on which other splits were built.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

DATE_LETTERS = ("(A)", "(B)", "(C)", "(D)", "(E)", "(F)")
DATE_QUESTIONS = {  # phrase -> (days, months, years) from today
    "tomorrow": (1, 0, 0), "yesterday": (-1, 0, 0), "one week from today": (7, 0, 0), "one week ago": (-7, 0, 0),
    "10 days ago": (-10, 0, 0), "one year ago": (0, 0, -1), "one month from today": (0, 1, 0),
    "24 hours later": (1, 0, 0),
}  # fmt: skip
DATE_INSTRUCTION = (
    "Answer the multiple-choice question about dates. Reply with the letter of the correct option in parentheses, "
    "for example (A)."
)

TOPIC_THINGS = {  # 12 things a class: 4 train, 4 validation, 4 test (in this order)
    "animal": ["horse", "rabbit", "eagle", "dolphin", "tiger", "goat", "owl", "whale", "fox", "camel", "frog", "bear"],
    "fruit": ["apple", "banana", "cherry", "mango", "pear", "plum", "peach", "lemon", "grape", "melon", "kiwi", "fig"],
    "vehicle": ["truck", "bicycle", "bus", "tractor", "motorbike", "van", "taxi", "scooter", "tram", "jeep",
                "lorry", "minibus"],
    "instrument": ["violin", "piano", "trumpet", "drum", "flute", "guitar", "cello", "harp", "banjo", "clarinet",
                   "saxophone", "ukulele"],
    "tool": ["hammer", "wrench", "saw", "drill", "chisel", "shovel", "screwdriver", "pliers", "axe", "rake",
             "spanner", "trowel"],
    "drink": ["coffee", "tea", "lemonade", "milk", "juice", "cocoa", "cider", "soda", "smoothie", "espresso",
              "milkshake", "kombucha"],
    "clothing": ["jacket", "scarf", "sweater", "shirt", "coat", "skirt", "hoodie", "vest", "blouse", "cardigan",
                 "poncho", "tunic"],
    "sport": ["tennis", "hockey", "golf", "rugby", "cricket", "baseball", "volleyball", "badminton", "lacrosse",
              "handball", "squash", "polo"],
}  # fmt: skip
TOPIC_SENTENCES = [
    "My neighbour talked about the {x} for an hour.", "There was a picture of a {x} on the front page.",
    "She wrote a short note about the {x}.", "Everyone at the meeting asked about the {x}.",
    "The article on page three is about the {x}.", "He could not stop thinking about the {x}.",
]  # fmt: skip
TOPIC_INSTRUCTION = (
    "Classify the sentence by the kind of thing it is about. Reply with exactly one label from this list: "
    + ", ".join(TOPIC_THINGS) + "."
)  # fmt: skip

EMOTION_CUES = {  # 9 cue sentences a class: 3 train, 3 validation, 3 test
    "joy": ["I laughed all the way home, it was wonderful.", "Best day in years, I am so happy.",
            "We danced in the kitchen, pure delight.", "I smiled the whole afternoon, life is good.",
            "What a lovely surprise party, I felt so glad.", "I am thrilled and cheerful tonight.",
            "My heart is full of happiness today.", "I could not stop grinning, such a joyful day.",
            "Everything went right and I feel great."],
    "anger": ["I slammed the door, I am furious.", "They lied to me again and I am livid.",
              "I am so angry I could scream.", "That rude clerk made me boil with rage.",
              "I shouted at the screen, I was enraged.", "How dare they cancel, I am fuming.",
              "I am mad at him for breaking it.", "My blood boiled when they cheated.",
              "I lost my temper and yelled at them."],
    "sadness": ["I cried myself to sleep.", "I miss her so much it hurts.", "The house feels empty and I am sad.",
                "I feel down and lonely tonight.", "Tears came when I read the letter.",
                "My heart is heavy with grief.", "I am heartbroken about the news.",
                "Everything feels gloomy and hopeless.", "I sobbed quietly in my room."],
    "fear": ["I am terrified of what comes next.", "My hands shook, I was so scared.",
             "I heard footsteps and froze in panic.", "I am afraid to open the letter.",
             "The noise in the dark frightened me.", "I felt dread creeping up my spine.",
             "I am anxious and frightened about tomorrow.", "My heart raced with terror.",
             "I was too scared to move."],
    "surprise": ["I could not believe my eyes, what a shock.", "Wow, I never expected that at all.",
                 "I was stunned when they walked in.", "That twist caught me completely off guard.",
                 "I gasped, I had no idea.", "It was totally unexpected, I was amazed.",
                 "I was astonished by the result.", "Out of nowhere, a big surprise.",
                 "My jaw dropped when I saw it."],
    "disgust": ["The smell made me gag, revolting.", "I felt sick looking at the mess.",
                "That food was gross and slimy.", "Ugh, the bathroom was filthy and vile.",
                "It was so nasty I had to look away.", "The rotten milk disgusted me.",
                "I was repulsed by his behaviour.", "The sticky floor was repugnant.",
                "Yuck, the bin was crawling with maggots."],
}  # fmt: skip
EMOTION_FILLERS = [
    "In the morning I walked to the station and bought a newspaper.", "The train was a few minutes late again.",
    "At work we had the usual meeting about the schedule.", "For lunch I ate a sandwich at my desk.",
    "In the afternoon I answered emails and filed some reports.", "The weather was cloudy with a light wind.",
    "I stopped at the shop to buy bread and some rice.", "My sister called to ask about the weekend plans.",
    "Later I watered the plants on the balcony.", "The bus home was quieter than usual.",
    "I read two chapters of a book about old maps.", "Then I cooked pasta and washed the dishes.",
    "The neighbours were painting their fence.", "I checked the calendar for next week.",
    "A parcel arrived with the printer ink I ordered.", "I folded the laundry and put it away.",
]  # fmt: skip
EMOTION_INSTRUCTION = (
    "Read the diary entry and name the emotion the writer expresses. Reply with exactly one label from this list: "
    + ", ".join(EMOTION_CUES) + "."
)  # fmt: skip

SPLITS = ("train", "validation", "test")
_SPLIT_SALT = {"train": 11, "validation": 23, "test": 37}


@dataclass(frozen=True)
class Task:
    name: str
    instruction: str
    labels: tuple[str, ...]
    test_per_class: int

    def rows(self, split: str, per_class: int, seed: int, **options) -> list[dict]:
        """``per_class`` rows of every label from ``split``; the same arguments give the same rows."""
        if split not in SPLITS:
            raise ValueError(f"`split` must be one of {', '.join(SPLITS)}; got {split!r}.")
        rng = random.Random(seed * 1000 + _SPLIT_SALT[split])
        rows = [
            {"instruction": self.instruction, "input": text, "output": label}
            for _ in range(per_class)
            for label in self.labels
            for text in [_GENERATORS[self.name](rng, label, split, **options)]
        ]
        rng.shuffle(rows)
        return rows


def _pool(items: list[str], split: str) -> list[str]:
    third = len(items) // 3
    return items[SPLITS.index(split) * third : (SPLITS.index(split) + 1) * third]


def _shift(today: dt.date, days: int, months: int, years: int) -> dt.date:
    month_index = today.month - 1 + months
    year, month = today.year + years + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(today.day, 28)) + dt.timedelta(days=days)


def _date_question(rng: random.Random, label: str, split: str) -> str:
    # Splits differ by decade, so no (today, question) pair is shared between them.
    decade = {"train": 1980, "validation": 1990, "test": 2000}[split]
    today = dt.date(decade + rng.randrange(10), rng.randrange(1, 13), rng.randrange(1, 29))
    phrase, offset = rng.choice(list(DATE_QUESTIONS.items()))
    answer = _shift(today, *offset)
    distractors: list[dt.date] = []
    while len(distractors) < len(DATE_LETTERS) - 1:  # dates near the answer, so the format gives nothing away
        wrong = answer + dt.timedelta(days=rng.choice([-1, 1]) * rng.randrange(1, 400))
        if wrong != answer and wrong not in distractors:
            distractors.append(wrong)
    options = distractors[:]
    options.insert(DATE_LETTERS.index(label), answer)
    lines = [f"{letter} {day:%m/%d/%Y}" for letter, day in zip(DATE_LETTERS, options, strict=True)]
    return f"Today is {today:%m/%d/%Y}. What is the date {phrase} in MM/DD/YYYY?\nOptions:\n" + "\n".join(lines)


def _topic_sentence(rng: random.Random, label: str, split: str) -> str:
    return rng.choice(TOPIC_SENTENCES).format(x=rng.choice(_pool(TOPIC_THINGS[label], split)))


def _emotion_entry(rng: random.Random, label: str, split: str, fillers: int = 4) -> str:
    sentences = [rng.choice(EMOTION_FILLERS) for _ in range(fillers)]
    sentences.insert(rng.randrange(fillers + 1), rng.choice(_pool(EMOTION_CUES[label], split)))
    return " ".join(sentences)


_GENERATORS = {"date": _date_question, "topic": _topic_sentence, "emotion": _emotion_entry}

TASKS = {
    "date": Task("date", DATE_INSTRUCTION, DATE_LETTERS, test_per_class=4),
    "topic": Task("topic", TOPIC_INSTRUCTION, tuple(TOPIC_THINGS), test_per_class=3),
    "emotion": Task("emotion", EMOTION_INSTRUCTION, tuple(EMOTION_CUES), test_per_class=4),
}
