"""soundsight's shared typed core: settings, schemas, cache-key rules and file helpers.

The core imports none of the project's other packages (flows, tasks, models, prompts).
"""

__version__ = "0.1.0"
