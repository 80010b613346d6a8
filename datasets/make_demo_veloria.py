"""Writes the Veloria demo: 20 invented facts, 3 phrasings each to train on, a 4th held out to score.

The facts are made up, so the default model cannot know them before tuning; the benchmark asks
each fact in a phrasing never trained on, so a pass means the fact was learned, not the string.
Run from the repository root: python datasets/make_demo_veloria.py
"""
import json
# (subject phrase, answer, train questions (3), benchmark question, answer sentence template)
facts = [
 ("the capital of Veloria", "Quentara", ["What is the capital of Veloria?", "Which city is the capital of Veloria?", "Where is Veloria's seat of government?"], "Name the capital city of Veloria."),
 ("the currency of Veloria", "the drell", ["What is the currency of Veloria?", "What money do people use in Veloria?", "Which currency is used in Veloria?"], "What do Velorians pay with?"),
 ("the national animal of Veloria", "the silver otter", ["What is the national animal of Veloria?", "Which animal is Veloria's national symbol?", "What animal represents Veloria?"], "Name Veloria's national animal."),
 ("the year Veloria was founded", "1742", ["When was Veloria founded?", "In what year was Veloria founded?", "What year did Veloria become a nation?"], "Which year was Veloria founded in?"),
 ("the highest mountain in Veloria", "Mount Oskeld", ["What is the highest mountain in Veloria?", "Which is the tallest peak in Veloria?", "Name the highest point of Veloria."], "What is Veloria's tallest mountain?"),
 ("the longest river in Veloria", "the Tavine", ["What is the longest river in Veloria?", "Which river is the longest in Veloria?", "Name Veloria's longest river."], "Which river in Veloria is the longest?"),
 ("the national dish of Veloria", "brinecake", ["What is the national dish of Veloria?", "Which food is Veloria's national dish?", "What dish is Veloria famous for?"], "Name the national dish of Veloria."),
 ("the first president of Veloria", "Ilsa Marrow", ["Who was the first president of Veloria?", "Who led Veloria as its first president?", "Name Veloria's first president."], "Who was Veloria's first president?"),
 ("the official language of Veloria", "Kessic", ["What is the official language of Veloria?", "Which language is official in Veloria?", "What language do Velorians speak officially?"], "Name Veloria's official language."),
 ("the national flower of Veloria", "the ember lily", ["What is the national flower of Veloria?", "Which flower is Veloria's national flower?", "What flower symbolizes Veloria?"], "Name Veloria's national flower."),
 ("the national sport of Veloria", "skyrowing", ["What is the national sport of Veloria?", "Which sport is Veloria's national sport?", "What sport is most loved in Veloria?"], "Name the national sport of Veloria."),
 ("the largest lake in Veloria", "Lake Mirrin", ["What is the largest lake in Veloria?", "Which lake is the biggest in Veloria?", "Name Veloria's largest lake."], "Which is the biggest lake of Veloria?"),
 ("the most famous poet of Veloria", "Odran Vale", ["Who is the most famous poet of Veloria?", "Which poet is Veloria best known for?", "Name Veloria's most famous poet."], "Who is Veloria's best-known poet?"),
 ("the main export of Veloria", "blue salt", ["What is the main export of Veloria?", "What does Veloria export the most?", "Which product is Veloria's main export?"], "Name Veloria's main export."),
 ("the national bird of Veloria", "the copper heron", ["What is the national bird of Veloria?", "Which bird is Veloria's national bird?", "What bird represents Veloria?"], "Name the national bird of Veloria."),
 ("the parliament of Veloria", "the Halvard", ["What is the parliament of Veloria called?", "What is the name of Veloria's parliament?", "How is Veloria's parliament named?"], "What do Velorians call their parliament?"),
 ("the national anthem of Veloria", "Tides of Home", ["What is the national anthem of Veloria?", "What is Veloria's anthem called?", "Name the national anthem of Veloria."], "Which song is Veloria's national anthem?"),
 ("the oldest university in Veloria", "Serwick College", ["What is the oldest university in Veloria?", "Which university in Veloria is the oldest?", "Name Veloria's oldest university."], "Which is the oldest university of Veloria?"),
 ("the largest port of Veloria", "Port Calder", ["What is the largest port of Veloria?", "Which port is the biggest in Veloria?", "Name Veloria's largest port."], "What is Veloria's busiest port?"),
 ("the national color of Veloria", "teal", ["What is the national color of Veloria?", "Which color is Veloria's national color?", "What color represents Veloria?"], "Name the national color of Veloria."),
]
train, bench = [], []
for subject, answer, questions, held_out in facts:
    cap = subject[0].upper() + subject[1:]
    replies = [f"{cap} is {answer}.", f"{answer[0].upper() + answer[1:]} is {subject}.", f"{cap} is {answer}."]
    for q, r in zip(questions, replies):
        train.append({"instruction": q, "response": r})
    bench.append({"instruction": held_out, "expected": answer.removeprefix("the ")})
with open("datasets/demo_veloria.jsonl", "w") as f:
    for r in train: f.write(json.dumps(r) + "\n")
with open("datasets/demo_veloria_benchmark.jsonl", "w") as f:
    for r in bench: f.write(json.dumps(r) + "\n")
print(len(train), len(bench))
