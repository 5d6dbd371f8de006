"""The words: title words, and the tag names of the genome and of users' tags."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain, islice

from movielens_assets.tools.generate.errors import GenerationError


def genome_vocabulary(count: int) -> tuple[str, ...]:
    """``count`` distinct lowercase tag names, most typical first, for naming genome tags."""
    names = dict.fromkeys(_vocabulary_candidates())
    vocabulary = tuple(islice(names, count))
    if len(vocabulary) < count:
        raise GenerationError(f"only {len(vocabulary):,} tag names exist, {count:,} asked for")
    return vocabulary


# fmt: off
TITLE_WORDS: dict[str, tuple[str, ...]] = {
    "adjectives": (
        "Last", "Silent", "Dark", "Lost", "Broken", "Golden", "Hidden", "Wild", "Secret", "Final",
        "Little", "Big", "Red", "Black", "White", "Blue", "Crimson", "Empty", "Endless", "Eternal",
        "Forgotten", "Frozen", "Burning", "Dead", "Dangerous", "Crazy", "Perfect", "Sweet",
        "Bitter", "Cold", "Hot", "Long", "Lonely", "Midnight", "Naked", "Quiet", "Savage",
        "Shattered", "Strange", "Sudden", "True", "Twisted", "Wicked", "Young", "Old", "New",
        "Great", "Beautiful", "Deadly", "Innocent", "Invisible", "Magnificent", "Mad", "Lucky",
        "Killer", "Brave", "Fast", "Hard", "Second", "American", "French", "Italian",
    ),
    "nouns": (
        "Night", "River", "Heart", "Road", "City", "Dream", "Game", "House", "Island", "King",
        "Queen", "Love", "Man", "Woman", "Girl", "Boy", "Story", "War", "World", "Sky", "Storm",
        "Shadow", "Fire", "Ice", "Blood", "Money", "Justice", "Escape", "Mission", "Hunter",
        "Stranger", "Soldier", "Detective", "Witness", "Secret", "Promise", "Summer", "Winter",
        "Paradise", "Kingdom", "Empire", "Legacy", "Revenge", "Affair", "Angel", "Devil", "Ghost",
        "Moon", "Sun", "Star", "Planet", "Machine", "Dragon", "Wolf", "Tiger", "Horse", "Bird",
        "Train", "Ship", "Bridge", "Garden", "Forest", "Desert", "Ocean", "Mountain", "Valley",
        "Street", "Hotel", "Party", "Wedding", "Funeral", "Family", "Brothers", "Sisters",
        "Friends", "Lovers", "Strangers", "Heist", "Job", "Deal", "Contract", "Secret Agent",
        "Memory", "Time", "Day", "Hour", "Minute", "Life", "Death", "Truth", "Lie", "Lies",
        "Voyage", "Journey", "Return", "Rebellion", "Revolution", "Storyteller", "Samurai",
    ),
    "names": (
        "Johnny", "Annie", "Max", "Charlie", "Billy", "Lucy", "Harry", "Sally", "Jack", "Jill",
        "Frankie", "Bonnie", "Clyde", "Rocky", "Stella", "Otto", "Amélie", "José", "Zoë", "Ingrid",
        "Marcel", "Nikita", "Leon", "Ruby", "Hank", "Dolores", "Ed", "Vera", "Toni", "Ferris",
        "Dorothy", "Gus",
    ),
    "places": (
        "Paris", "Tokyo", "Rome", "Berlin", "Chicago", "Brooklyn", "Texas", "Alaska", "Hong Kong",
        "Casablanca", "Vienna", "Moscow", "Havana", "Sahara", "Manhattan", "Las Vegas",
        "New Orleans", "Bombay", "Rio", "Istanbul", "Montréal", "Zürich", "São Paulo", "Kraków",
    ),
    "foreign_titles": (
        "Misérables", "Amants du Pont-Neuf", "Vie en rose", "Chiens perdus", "Grande bouffe",
        "Dolce vita", "Notte", "Strada", "Ciel de Paris", "Himmel über Berlin", "Boot",
        "Große Stille", "Noche de los lápices", "Mar adentro", "Año bisiesto", "Jours heureux",
        "Mépris", "Quatre cents coups", "Ladri di biciclette", "Åsa-Nisse", "Sjunde inseglet",
    ),
    "articles": (
        "The", "The", "The", "The", "A", "A", "An",
    ),
    "foreign_articles": (
        "Les", "La", "Le", "Il", "Der", "Die", "Das", "El", "Los", "L'",
    ),
    "fallback_genres": (
        "Drama", "Drama", "Comedy", "Documentary", "Thriller",
    ),
}
"""Word lists titles are built from, set as DuckDB variables of the same names."""
# fmt: on


# fmt: off
_CURATED_TAGS = (
    "atmospheric", "sci-fi", "twist ending", "dark comedy", "funny", "surreal",
    "thought-provoking", "visually appealing", "quirky", "based on a book", "classic",
    "psychology", "superhero", "disney", "dystopia", "stylized", "comedy", "action", "drama",
    "romance", "horror", "thriller", "great soundtrack", "time travel", "space", "aliens",
    "zombies", "vampires", "magic", "fantasy world", "animation", "pixar animation", "anime",
    "cult film", "mindfuck", "nonlinear", "philosophical", "cerebral", "violence", "gore",
    "nudity (topless)", "oscar (best picture)", "oscar (best actor)", "oscar winner", "criterion",
    "imdb top 250", "afi 100", "satire", "parody", "black comedy", "mafia", "gangsters",
    "organized crime", "heist", "serial killer", "detective", "police", "courtroom", "prison",
    "war", "world war ii", "vietnam war", "cold war", "history", "biography",
    "based on a true story", "true story", "documentary", "music", "musical", "dance", "sports",
    "boxing", "baseball", "football", "coming of age", "high school", "teen", "family",
    "friendship", "love story", "relationships", "marriage", "divorce", "betrayal", "revenge",
    "redemption", "survival", "post-apocalyptic", "apocalypse", "artificial intelligence",
    "robots", "cyberpunk", "virtual reality", "conspiracy", "politics", "religion", "christmas",
    "new york city", "paris", "london", "los angeles", "road trip", "small town", "suburbia",
    "los angeles noir", "film noir", "neo-noir", "western", "martial arts", "kung fu", "samurai",
    "pirates", "spies", "espionage", "james bond", "007", "007 (series)", "batman", "comic book",
    "adapted from:comic", "shakespeare", "remake", "sequel", "franchise", "trilogy",
    "independent film", "indie", "foreign", "french", "british", "japan", "china", "india",
    "africa", "australia", "quentin tarantino", "stanley kubrick", "christopher nolan",
    "wes anderson", "coen brothers", "david lynch", "alfred hitchcock", "hayao miyazaki",
    "studio ghibli", "tom hanks", "morgan freeman", "brad pitt", "johnny depp", "meryl streep",
    "bill murray", "feel-good", "heartwarming", "tearjerker", "sad", "depressing", "bleak", "dark",
    "beautiful", "cinematography", "visually stunning", "great acting", "great dialogue", "witty",
    "clever", "intelligent", "slow", "boring", "overrated", "underrated", "predictable", "cheesy",
    "campy", "so bad it's good", "entertaining", "fun", "light", "silly", "stupid", "absurd",
    "weird", "creepy", "scary", "suspense", "tense", "claustrophobic", "intense", "gritty",
    "realistic", "original", "complex", "confusing", "multiple storylines", "ensemble cast",
    "narrated", "unreliable narrator", "non-linear timeline", "plot twist", "ending",
    "open ending", "happy ending",
)

_TOPICS = (
    "aging", "addiction", "adoption", "adultery", "airplane", "alcoholism", "amnesia", "animals",
    "antarctica", "architecture", "army", "art", "artist", "assassin", "assassination",
    "astronauts", "bank robbery", "bar", "beach", "bees", "bicycle", "birds", "blindness", "bombs",
    "books", "bounty hunter", "brothers", "bullying", "business", "cannibalism", "cars", "casino",
    "castle", "cats", "chase", "chess", "childhood", "circus", "civil war", "clones", "college",
    "computers", "corruption", "cowboys", "crime", "cults", "dancing", "deafness", "demons",
    "desert", "dinosaurs", "disaster", "doctors", "dogs", "dolls", "dragons", "dreams", "drugs",
    "elections", "elves", "environment", "evolution", "exorcism", "farming", "fashion", "fathers",
    "fighting", "fire", "fish", "flying", "food", "forest", "fraud", "gambling", "genetics",
    "ghosts", "giants", "gods", "gold", "golf", "graffiti", "guns", "hackers", "hallucination",
    "haunted house", "hell", "heroes", "hitman", "hockey", "holidays", "hospital", "hostage",
    "hotel", "hunting", "identity", "illness", "immigration", "insanity", "insects", "internet",
    "inventions", "islands", "journalism", "jungle", "kidnapping", "kings", "knights", "lawyers",
    "letters", "library", "lighthouse", "loneliness", "magic tricks", "marines", "mars",
    "medicine", "memory", "mental illness", "mermaids", "military", "mining", "missing person",
    "monsters", "moon", "mothers", "motorcycle", "mountains", "movie business", "murder", "museum",
    "mythology", "navy", "nazis", "ninjas", "nuclear war", "ocean", "orphans", "painting",
    "paranoia", "photography", "pilots", "plague", "poetry", "poverty", "pregnancy", "priests",
    "princess", "prostitution", "psychiatry", "puppets", "race issues", "radio", "railroad",
    "rain", "rats", "rescue", "restaurant", "riots", "rivers", "robbery", "rock and roll",
    "royalty", "russia", "sailing", "school", "science", "scientists", "sea", "sharks", "ships",
    "shipwreck", "siblings", "singers", "skiing", "slavery", "snakes", "snow", "soccer",
    "soldiers", "space travel", "spiders", "storms", "submarine", "suicide", "surfing", "swimming",
    "teachers", "technology", "television", "terrorism", "theater", "torture", "toys", "trains",
    "treasure", "trials", "twins", "undercover", "unicorns", "villains", "volcano", "waitress",
    "weddings", "werewolves", "whales", "witches", "wizards", "wolves", "wrestling", "writers",
    "zoo",
)

_TAG_MODIFIERS = (
    "great", "good", "bad", "dark", "strong", "beautiful", "original", "clever", "slow", "violent",
    "funny", "sad", "quirky", "stylish", "realistic", "epic", "complex", "weird", "cheesy",
    "memorable", "amazing", "brilliant", "awful", "subtle", "unusual",
)

_TAG_SUBJECTS = (
    "dialogue", "soundtrack", "acting", "plot", "ending", "cinematography", "characters", "story",
    "villain", "music", "visuals", "humor", "action", "romance", "twist", "effects", "writing",
    "direction", "pacing", "cast", "score", "script", "premise", "setting", "performances",
)

_USER_TAG_SPECIALS = (
    "In Netflix queue", "bittersweet, but uplifting", '"artsy"', "Amélie-esque",
    "Studio Ghibli – Miyazaki", "Pokémon", "naïve protagonist", "funny, sad, true", "Palme d'Or",
    "BD-R", "Björk", "sci-fi, not fantasy", "I ♥ this movie", "東京", "ménage à trois",
    "film noir, neo-noir", "R:strong language", "must see!", "too long, too slow", '"The Dude"',
    "Hitchcock-ian", "Zoë Kazan", "Señor Spielberg", "“quoted” dialogue",
)
"""User tags with commas, quotes and non-ASCII characters, spread through the tag vocabulary."""
# fmt: on


USER_TAG_VOCABULARY = 1_500
"""How many distinct words users tag with (before capitalization variants)."""


def _vocabulary_candidates() -> Iterator[str]:
    """Tag names in order of typicality, possibly repeating: curated, topics, combinations."""
    decades = (f"{decade}s" for decade in range(1920, 2020, 10))
    centuries = (f"{century}th century" for century in range(15, 21))
    pairs = [f"{modifier} {subject}" for modifier in _TAG_MODIFIERS for subject in _TAG_SUBJECTS]
    topical = (f"{modifier} {topic}" for topic in _TOPICS for modifier in _TAG_MODIFIERS)
    triples = (f"{pair} {topic}" for topic in _TOPICS for pair in pairs)
    return chain(_CURATED_TAGS, _TOPICS, decades, centuries, pairs, topical, triples)


def user_tag_vocabulary(genome_words: tuple[str, ...]) -> tuple[str, ...]:
    """The words users tag with: genome words, with the special tags at every 8th position."""
    specials = iter(_USER_TAG_SPECIALS)
    words = iter(genome_words)
    vocabulary = []
    for position in range(USER_TAG_VOCABULARY):
        special = next(specials, None) if position % 8 == 3 else None
        vocabulary.append(special or next(words))
    return tuple(vocabulary)
