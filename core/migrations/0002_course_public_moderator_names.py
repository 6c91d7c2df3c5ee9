from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('core', '0001_initial')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Course',
            name='public_moderator_names',
            field=fields.BooleanField(default=False),
        ),
    ]
