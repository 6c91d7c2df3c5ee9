from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('core', '0002_course_public_moderator_names'), ('peer_review', '0001_initial')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Grade',
            name='peer_high_percent',
            field=fields.FloatField(null=True),
        ),
        ops.AddField(
            model_name='Grade',
            name='peer_low_percent',
            field=fields.FloatField(null=True),
        ),
    ]
