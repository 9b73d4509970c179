"""How `ask` answers, one module per way: text.py (tier 1: recalled passages read as
text), kv.py (tier 2: their key/value memories), params.py (tier 3: the namespace's
adapter, nothing recalled), whole.py (the whole input in one Λ-shaped pass). agents/ask.py
chooses among them, in one place; question.py holds what they share."""
